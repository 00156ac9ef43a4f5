// amphi's own low-latency player: fetch the ticketed live.opus, demux its
// Ogg pages here, decode each Opus packet with WebCodecs and schedule the
// decoded frames back to back in one AudioContext, a fixed `target` ahead
// of its clock. An <audio> element plays a stream of unknown length only
// once it holds ~96 KB, seconds behind the live edge; this plays what
// arrives a quarter second after it arrives.
//
// Opt-in (space.js, ?player=low) while it is new: it needs WebCodecs'
// AudioDecoder with Opus, which supported() asks the browser about.

const config = {codec: 'opus', sampleRate: 48000, numberOfChannels: 1};

// The server's smallest burst and flush (docs/API.md, internal/edge): a
// chunk of 100 ms. A zero burst would mean the default 500 ms.
const streamParams = 'burst=100ms&flush=100ms';

// maxAhead bounds the audio queued beyond target: after a stall (a hidden
// tab, a slow network) frames arrive in a heap, and playing them all would
// keep the listener that far behind for good.
const maxAhead = 0.5;

// supported says whether this browser can decode Opus with WebCodecs.
export async function supported() {
  if (typeof AudioDecoder === 'undefined') return false;
  try {
    const r = await AudioDecoder.isConfigSupported(config);
    return !!r.supported;
  } catch (_) {
    return false;
  }
}

// resumeFor is how long a stream that breaks before the program's end is
// asked for again, from the chunk after the last one played (from_seq): an
// edge that dies hands its listeners to another without a hole.
const resumeFor = 10000;
const resumeEvery = 250;

// OggReader splits a byte stream into Ogg packets (RFC 3533), each handed
// over with its page's sequence number and whether that page ends the
// stream (EOS). A packet ends at the first lacing value under 255; one may
// continue onto the next page.
class OggReader {
  constructor(onPacket) {
    this.onPacket = onPacket;
    this.buf = new Uint8Array(0);
    this.partial = [];    // segments of a packet not ended yet
  }

  push(bytes) {
    if (this.buf.length) {
      const b = new Uint8Array(this.buf.length + bytes.length);
      b.set(this.buf);
      b.set(bytes, this.buf.length);
      this.buf = b;
    } else {
      this.buf = bytes;
    }
    let off = 0;
    for (;;) {
      const b = this.buf;
      if (b.length - off < 27) break;
      if (b[off] !== 0x4f || b[off + 1] !== 0x67 || b[off + 2] !== 0x67 || b[off + 3] !== 0x53) {
        throw new Error('the stream is not Ogg');
      }
      const nseg = b[off + 26];
      if (b.length - off < 27 + nseg) break;
      let size = 0;
      for (let i = 0; i < nseg; i++) size += b[off + 27 + i];
      const end = off + 27 + nseg + size;
      if (b.length < end) break;
      const continued = (b[off + 5] & 1) !== 0;
      const page = {seq: (b[off + 18] | (b[off + 19] << 8) | (b[off + 20] << 16) | (b[off + 21] << 24)) >>> 0,
        eos: (b[off + 5] & 4) !== 0};
      if (!continued) this.partial = []; // a lost continuation: drop its start
      let p = off + 27 + nseg;
      for (let i = 0; i < nseg; i++) {
        const lace = b[off + 27 + i];
        this.partial.push(b.subarray(p, p + lace));
        p += lace;
        if (lace < 255) {
          this.onPacket(concat(this.partial), page);
          this.partial = [];
        }
      }
      off = end;
    }
    // Copy the rest: it must not pin the whole read buffer, nor be
    // changed under the packets handed out.
    this.buf = this.buf.slice(off);
  }
}

function concat(parts) {
  if (parts.length === 1) return parts[0].slice();
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

const isTag = (p, tag) => p.length >= 8 && String.fromCharCode(...p.subarray(0, 8)) === tag;

// playLowLatency plays the live stream at url. onState gets 'buffering',
// 'playing', 'ended' or 'error' (with the Error). context, if given, is an
// AudioContext made during the user's gesture, so it may start. It returns
// stop(), the AnalyserNode the audio passes through, and stats().
export async function playLowLatency(url, {onState = () => {}, target = 0.25, context = null} = {}) {
  const ac = context || new AudioContext({sampleRate: 48000, latencyHint: 'interactive'});
  const analyser = ac.createAnalyser();
  analyser.connect(ac.destination);
  const abort = new AbortController();
  const st = {packets: 0, frames: 0, underruns: 0, dropped: 0, preSkip: 0, resumes: 0, holes: 0};
  let next = -1;        // the AudioContext time the next frame starts at
  let skip = 0;         // samples of pre-skip still to drop
  let state = '';
  let done = false;

  const setState = (s, err) => {
    if (s === state || done) return;
    state = s;
    if (s === 'ended' || s === 'error') done = true;
    onState(s, err);
  };

  const decoder = new AudioDecoder({
    output: (ad) => {
      try {
        schedule(ad);
      } finally {
        ad.close();
      }
    },
    error: (e) => fail(e),
  });
  decoder.configure(config);

  function schedule(ad) {
    if (done) return;
    let n = ad.numberOfFrames;
    const pcm = new Float32Array(n);
    ad.copyTo(pcm, {planeIndex: 0, format: 'f32-planar'});
    let from = 0;
    if (skip > 0) {
      from = Math.min(skip, n);
      skip -= from;
      n -= from;
      if (n === 0) return;
    }
    const buf = ac.createBuffer(1, n, ad.sampleRate);
    buf.copyToChannel(from ? pcm.subarray(from) : pcm, 0);
    const now = ac.currentTime;
    // At the start and after an underrun, anchor target ahead of now:
    // enough for the next write to arrive before this audio runs out.
    if (next < now + 0.005) {
      if (next >= 0) st.underruns++;
      next = now + target;
      setState('playing');
    } else if (next > now + target + maxAhead) {
      st.dropped++;
      return;
    }
    const src = ac.createBufferSource();
    src.buffer = buf;
    src.connect(analyser);
    src.start(next);
    next += buf.duration;
    st.frames++;
  }

  // An audio page's sequence number is its chunk + 2 (docs/API.md): the
  // chunks say where a resumed stream must start, which repeated ones to
  // drop, and whether any never came (a hole).
  let lastChunk = -1;
  let page = -1;        // the page the packets come from
  let dropPage = false; // a page already played, sent again on a resume
  let ended = false;    // the EOS page came
  let ts = 0;
  const onPacket = (p, pg) => {
    ended = ended || pg.eos;
    // Each response starts with OpusHead and OpusTags (RFC 7845).
    if (pg.seq < 2) {
      if (isTag(p, 'OpusHead') && p.length >= 12 && st.packets === 0) {
        st.preSkip = p[10] | (p[11] << 8);
        skip = st.preSkip;
      }
      return;
    }
    if (pg.seq !== page) {
      page = pg.seq;
      const chunk = pg.seq - 2;
      dropPage = chunk <= lastChunk;
      if (!dropPage) {
        if (lastChunk >= 0 && chunk > lastChunk + 1) st.holes++;
        lastChunk = chunk;
      }
    }
    if (dropPage) return;
    st.packets++;
    // Timestamps only order the chunks: the schedule is ours.
    decoder.decode(new EncodedAudioChunk({type: 'key', timestamp: ts, data: p}));
    ts += 20000;
  };

  function fail(e) {
    if (done) return;
    abort.abort();
    setState('error', e instanceof Error ? e : new Error(String(e)));
  }

  const sep = url.includes('?') ? '&' : '?';
  const open = () => fetch(url + sep + (lastChunk < 0 ? streamParams : 'flush=100ms&from_seq=' + (lastChunk + 1)),
    {signal: abort.signal, cache: 'no-store'});
  setState('buffering');
  let r = await open();
  if (!r.ok || !r.body) {
    let msg = 'the server answered ' + r.status;
    try {
      const j = await r.json();
      if (j && j.message) msg = j.message;
    } catch (_) { /* not JSON: the status says it */ }
    throw new Error(msg);
  }
  await ac.resume().catch(() => {});

  // resume asks for the stream again from where it broke, for resumeFor;
  // it returns the new response, or null.
  async function resume() {
    for (const until = Date.now() + resumeFor; Date.now() < until && !abort.signal.aborted;) {
      try {
        const again = await open();
        if (again.ok && again.body) return again;
      } catch (_) { /* the network: try again */ }
      await new Promise((res) => setTimeout(res, resumeEvery));
    }
    return null;
  }

  (async () => {
    for (;;) {
      let broke = null;
      const ogg = new OggReader(onPacket); // a new response starts a new page
      try {
        const reader = r.body.getReader();
        for (;;) {
          const {value, done: eof} = await reader.read();
          if (eof) break;
          ogg.push(value);
        }
      } catch (e) {
        if (abort.signal.aborted) return;
        broke = e;
      }
      if (ended) {
        if (decoder.state === 'configured') await decoder.flush();
        setState('ended');
        return;
      }
      // Broken before the program's end: its edge went away.
      r = await resume();
      if (!r) {
        fail(broke || new Error('the stream broke and did not come back'));
        return;
      }
      st.resumes++;
    }
  })();

  return {
    analyser,
    stop() {
      if (done) return;
      done = true;
      abort.abort();
      if (decoder.state !== 'closed') decoder.close();
      if (!context) ac.close().catch(() => {});
    },
    stats() {
      return {...st, ahead: next >= 0 ? Math.max(0, next - ac.currentTime) : 0,
        baseLatency: ac.baseLatency || 0, outputLatency: ac.outputLatency || 0};
    },
  };
}
