// Putting this browser's microphone on a space's stage over WHIP
// (docs/API.md, "Stage: WHIP"), and hearing the other speakers back. The
// host console and the speaker page both speak through it.
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
const heardPollMs = 1000;

// WHIPError is a refusal from the server, with its status and the API's
// error code ('full', …) so callers can word 401, 403 and 503 for people.
export class WHIPError extends Error {
  constructor(status, message, code = '') {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function refusal(r) {
  try {
    const body = await r.json();
    if (body && body.error && body.error.message) return new WHIPError(r.status, body.error.message, body.error.code || '');
  } catch (_) { /* not JSON */ }
  return new WHIPError(r.status, 'the server answered ' + r.status);
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

// playTrack gives a received track a hidden, autoplaying <audio> element
// in the given container. Silent slots play silence, which costs nothing
// worth saving. onBlocked runs when the browser holds autoplay back until
// the person interacts with the page.
export function playTrack(track, into, onBlocked = () => {}) {
  const a = document.createElement('audio');
  a.autoplay = true;
  a.srcObject = new MediaStream([track]);
  into.append(a);
  a.play().catch(() => onBlocked());
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
    this.left = false; // leave() was called: later events are not news
    this.heardTimer = 0;
  }

  // countHeard calls onHeard with heard() every second until leave().
  countHeard(onHeard) {
    clearInterval(this.heardTimer);
    this.heardTimer = setInterval(async () => {
      const n = await this.heard().catch(() => 0);
      if (!this.left) onHeard(n);
    }, heardPollMs);
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
  // keepalive lets the DELETE outlive a page being closed. From here on
  // neither onState nor onEnd is called: the server closing the
  // connection in answer to the DELETE is no loss.
  async leave(keepalive = false) {
    this.left = true;
    clearInterval(this.heardTimer);
    const s = this.session;
    this.session = '';
    const req = s ? fetch(s, {method: 'DELETE', keepalive, headers: this.headers}).catch(() => {}) : null;
    this.pc.close();
    for (const t of this.mic.getTracks()) t.stop();
    if (req && !keepalive) await req;
  }
}

// join asks for the microphone, offers it and the receiving slots to
// whipURL and returns the Stage once the answer is applied.
//
// onMicrophone runs once the microphone is granted, before connecting;
// onTrack gets each received track; onState the peer connection's
// connectionState; onHeard, every second once on stage, how many slots
// carry audio (Stage.heard). onEnd runs once when the session ends without leave():
// the connection failed or closed, or the server closed DTLS (the host
// removed this speaker, or the space ended), which shows at once where
// the peer connection would take up to 30 s of failed consent checks to
// call itself failed.
//
// On failure it releases everything and throws (a WHIPError for a
// refusal, a DOMException for a denied microphone).
export async function join({
  whipURL, headers = {}, raw = false,
  onMicrophone = () => {}, onTrack = () => {}, onState = () => {}, onHeard = null, onEnd = () => {},
}) {
  const mic = await navigator.mediaDevices.getUserMedia(micConstraints(raw));
  let stage = null;
  try {
    onMicrophone();
    const pc = new RTCPeerConnection();
    stage = new Stage(pc, mic, '', headers);
    let over = false;
    const end = () => {
      if (over || stage.left) return;
      over = true;
      onEnd();
    };
    const [track] = mic.getAudioTracks();
    pc.addTransceiver(track, {direction: 'sendonly', streams: [mic]});
    for (let i = 0; i < slots; i++) pc.addTransceiver('audio', {direction: 'recvonly'});
    pc.addEventListener('track', (e) => onTrack(e.track));
    pc.addEventListener('connectionstatechange', () => {
      if (stage.left) return;
      onState(pc.connectionState);
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') end();
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const r = await fetch(whipURL, {
      method: 'POST',
      headers: {...headers, 'Content-Type': 'application/sdp'},
      body: pc.localDescription.sdp,
    });
    if (r.status !== 201) throw await refusal(r);
    const loc = r.headers.get('Location');
    stage.session = loc ? sameOrigin(new URL(loc, new URL(whipURL, location.href)).href) : '';
    await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
    const dtls = pc.getSenders()[0] && pc.getSenders()[0].transport;
    if (dtls) {
      dtls.addEventListener('statechange', () => {
        if (dtls.state === 'closed' || dtls.state === 'failed') end();
      });
    }
    if (onHeard) stage.countHeard(onHeard);
    return stage;
  } catch (e) {
    if (stage) await stage.leave();
    else for (const t of mic.getTracks()) t.stop();
    throw e;
  }
}
