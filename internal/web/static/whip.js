// Putting this browser's microphone on a space's stage over WHIP
// (docs/API.md, "Stage: WHIP"), and hearing the other speakers back.
//
// The offer is non-trickle: one sendonly m-line for the microphone and
// twelve recvonly ones, the slots on which the server sends the other
// speakers, with every ICE candidate gathered before it is posted.
//
// Echo cancellation, noise suppression and automatic gain are on, as a
// speaker on laptop speakers needs; raw turns them off: a test tone
// through them comes out mangled, and music sounds better without them.
//
// The caller says how to authenticate (a Bearer token, or the session
// cookie plus X-CSRF-Token): the same headers go on the POST and on the
// DELETE that leaves.

export const slots = 12;
const gatherTimeoutMs = 5000;

// WHIPError is a refusal from the server, with its status so callers can
// word 401, 403 and 503 for people.
export class WHIPError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function apiError(r) {
  try {
    const body = await r.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return 'the server answered ' + r.status;
}

// sameOrigin keeps a URL's path and query only: the server may build
// absolute URLs from the Host it was asked on, which behind a TLS proxy
// names the wrong scheme.
function sameOrigin(u) {
  const x = new URL(u, location.href);
  return x.pathname + x.search;
}

// gathered resolves once ICE gathering completes, or after the timeout
// with what was gathered by then: a host with many interfaces can take
// long over the last candidates, and the ones at hand usually suffice.
export function gathered(pc, timeoutMs = gatherTimeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener('icegatheringstatechange', done);
      resolve();
    }, timeoutMs);
    pc.addEventListener('icegatheringstatechange', done);
  });
}

// micConstraints asks for processed audio, or for the microphone as it is.
export function micConstraints(raw) {
  const on = !raw;
  return {audio: {echoCancellation: on, noiseSuppression: on, autoGainControl: on}};
}

// Stage is one WHIP session: the peer connection, the microphone and the
// session's URL, which DELETE ends.
export class Stage {
  constructor(pc, mic, session, headers) {
    this.pc = pc;
    this.mic = mic;
    this.session = session;
    this.headers = headers;
    this.lastPackets = new Map();
  }

  // muted says whether no microphone track is sending.
  get muted() {
    return !this.mic.getAudioTracks().some((t) => t.enabled);
  }

  // setMuted stops or resumes sending the microphone: a disabled track
  // sends silence, so the session and its slot stay.
  setMuted(m) {
    for (const t of this.mic.getAudioTracks()) t.enabled = !m;
  }

  // heard counts the slots that received packets since the last call:
  // every slot has a track from the start, so only the packets tell a
  // speaking one from an empty one.
  async heard() {
    let n = 0;
    const stats = await this.pc.getStats();
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'audio') return;
      if ((s.packetsReceived || 0) > (this.lastPackets.get(s.id) || 0)) n++;
      this.lastPackets.set(s.id, s.packetsReceived || 0);
    });
    return n;
  }

  // leave ends the WHIP session (the server would drop it anyway once the
  // connection fails, after about 5 s) and releases the microphone.
  // keepalive lets the DELETE outlive a page being closed.
  async leave(keepalive = false) {
    const s = this.session;
    this.session = '';
    const req = s ? fetch(s, {method: 'DELETE', keepalive, headers: this.headers}).catch(() => {}) : null;
    this.pc.close();
    for (const t of this.mic.getTracks()) t.stop();
    if (req && !keepalive) await req;
  }
}

// join asks for the microphone, offers it and the receiving slots to
// whipURL and returns the Stage once the answer is applied. onTrack gets
// each received track; onState the peer connection's connectionState.
// On failure it releases everything and throws (a WHIPError for a
// refusal, a DOMException for a denied microphone).
export async function join({whipURL, headers = {}, raw = false, onTrack = () => {}, onState = () => {}}) {
  const mic = await navigator.mediaDevices.getUserMedia(micConstraints(raw));
  let pc = null;
  try {
    pc = new RTCPeerConnection();
    const [track] = mic.getAudioTracks();
    pc.addTransceiver(track, {direction: 'sendonly', streams: [mic]});
    for (let i = 0; i < slots; i++) pc.addTransceiver('audio', {direction: 'recvonly'});
    pc.addEventListener('track', (e) => onTrack(e.track));
    const p = pc;
    pc.addEventListener('connectionstatechange', () => onState(p.connectionState));
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const r = await fetch(whipURL, {
      method: 'POST',
      headers: {...headers, 'Content-Type': 'application/sdp'},
      body: pc.localDescription.sdp,
    });
    if (r.status !== 201) throw new WHIPError(r.status, await apiError(r));
    const loc = r.headers.get('Location');
    const session = loc ? sameOrigin(new URL(loc, new URL(whipURL, location.href)).href) : '';
    const stage = new Stage(pc, mic, session, headers);
    try {
      await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
    } catch (e) {
      await stage.leave();
      throw e;
    }
    return stage;
  } catch (e) {
    if (pc) pc.close();
    for (const t of mic.getTracks()) t.stop();
    throw e;
  }
}
