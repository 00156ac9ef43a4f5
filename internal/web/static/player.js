// amphi's own low-latency player: fetch the ticketed live.opus, demux its
// Ogg pages here, decode each Opus packet with WebCodecs and schedule the
// decoded frames back to back in one AudioContext, a fixed `target` ahead
// of its clock. An <audio> element plays a stream of unknown length only
// once it holds ~96 KB, seconds behind the live edge; this plays what
// arrives a quarter second after it arrives.
//
// The space page's player wherever it can be (space.js): it needs
// WebCodecs' AudioDecoder with Opus, which supported() asks the browser
// about. A stream asked from behind live (from=start, from=-5m) comes as
// fast as it is read: the player decodes no further than maxBuffered ahead
// (and reads no further while packets wait to be decoded), and catches up,
// faster without a change of pitch, until it is live.

const config = {codec: 'opus', sampleRate: 48000, numberOfChannels: 1};

// The server's smallest burst and flush (docs/API.md, internal/edge): a
// chunk of 100 ms. A zero burst would mean the default 500 ms.
const streamParams = 'burst=100ms&flush=100ms';

// maxAhead bounds the audio queued beyond target: after a stall (a hidden
// tab, a slow network) frames arrive in a heap, and playing them all would
// keep the listener that far behind for good. A rewound stream is exempt:
// it catches up instead.
const maxAhead = 0.5;

// maxBuffered is the most audio, in seconds, decoded and scheduled ahead
// before the player stops decoding, then reading: a rewound stream's past
// (two hours of it, say) comes as fast as it is read.
const maxBuffered = 12;

// Catching up: a stream started behind live (from=start, from=-5m) plays
// at catchUpRate while more than catchUpFrom seconds behind, fastRate
// while more than fastFrom, and at 1 again once under liveWithin, or at
// the live edge (nothing more to read ahead). The Stretcher below keeps
// the pitch.
const catchUpFrom = 2, fastFrom = 60, liveWithin = 1;
const catchUpRate = 1.25, fastRate = 1.5;

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

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
// resumeInRing is how far behind live, in seconds, a resumed stream is
// asked for by chunk: well inside the 30 s an edge's ring holds.
const resumeInRing = 20;

// OggReader splits a byte stream into Ogg packets (RFC 3533), each handed
// over with its page (sequence number, whether it ends the stream) and the
// sample its audio starts at, from the page's granule position. A packet
// ends at the first lacing value under 255; one may continue onto the next
// page.
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
      const u32 = (o) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
      const hi = u32(off + 10);
      const page = {seq: u32(off + 18), eos: (b[off + 5] & 4) !== 0,
        // -1 (all ones) when no packet ends on the page.
        granule: hi === 0xffffffff ? -1 : hi * 4294967296 + u32(off + 6)};
      if (!continued) this.partial = []; // a lost continuation: drop its start
      const packets = [];
      let p = off + 27 + nseg;
      for (let i = 0; i < nseg; i++) {
        const lace = b[off + 27 + i];
        this.partial.push(b.subarray(p, p + lace));
        p += lace;
        if (lace < 255) {
          packets.push(concat(this.partial));
          this.partial = [];
        }
      }
      // The granule position is the sample after the page's last packet:
      // each packet starts that many samples back.
      let at = page.granule;
      const starts = packets.map((x) => opusSamples(x));
      for (let i = packets.length - 1; i >= 0; i--) {
        at -= starts[i];
        starts[i] = page.granule < 0 ? -1 : at;
      }
      for (let i = 0; i < packets.length; i++) this.onPacket(packets[i], page, starts[i]);
      off = end;
    }
    // Copy the rest: it must not pin the whole read buffer, nor be
    // changed under the packets handed out.
    this.buf = this.buf.slice(off);
  }
}

// opusSamples is an Opus packet's duration in 48 kHz samples, from its
// TOC byte (RFC 6716 §3.1).
function opusSamples(p) {
  if (!p.length) return 0;
  const toc = p[0], c = toc >> 3;
  const frame = c < 12 ? [480, 960, 1920, 2880][c & 3] : c < 16 ? [480, 960][c & 1] : [120, 240, 480, 960][c & 3];
  const code = toc & 3;
  return frame * (code === 0 ? 1 : code === 3 ? (p.length > 1 ? p[1] & 63 : 0) : 2);
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

// ---- Catching up without changing the pitch ----
//
// Stretcher plays audio faster by a rate without raising its pitch: WSOLA
// (waveform-similarity overlap-add). It cuts the input into 30 ms Hann
// windows that overlap by half in the output; each window is taken about
// rate × 15 ms after the last in the input, moved by up to 5 ms to where
// it best matches the audio that would have followed the last window, so
// the waves join in phase and a voice (or a tone) keeps its pitch. At rate
// 1 it takes each window right after the last and gives the input back
// unchanged, 15 ms later. Its cost is the search: ~120 multiply-adds per
// output sample at a rate above 1, none at 1.
const winLen = 1440;             // 30 ms at 48 kHz
const hop = winLen / 2;          // output advance per window
const seek = 240;                // ±5 ms: a period of any voice above 100 Hz
const hann = new Float32Array(winLen);
for (let i = 0; i < winLen; i++) hann[i] = 0.5 - 0.5 * Math.cos(2 * Math.PI * i / winLen);

class Stretcher {
  constructor() {
    this.x = new Float32Array(48000);
    this.len = 0;         // samples held in x
    this.base = 0;        // the input index of x[0]
    this.pos = 0;         // the input index the next window should start near
    this.prev = -1;       // the input index the last window started at
    this.tail = new Float32Array(hop); // the last window's second half, windowed
    this.marks = [];      // {index, media}: the media time of input indexes
  }

  // push adds pcm, whose first sample is at media seconds, and returns the
  // output now complete as blocks {pcm, media, rate}.
  push(pcm, media, rate) {
    if (this.len + pcm.length > this.x.length) {
      const x = new Float32Array(Math.max(this.x.length * 2, this.len + pcm.length));
      x.set(this.x.subarray(0, this.len));
      this.x = x;
    }
    this.marks.push({index: this.base + this.len, media});
    this.x.set(pcm, this.len);
    this.len += pcm.length;
    const out = [];
    const end = this.base + this.len;
    for (;;) {
      const plain = rate === 1 || this.prev < 0;
      const nominal = Math.round(this.pos);
      let p = plain ? (this.prev < 0 ? nominal : this.prev + hop) : nominal;
      if ((plain ? p : p + seek) + winLen > end) break;
      if (!plain) p = this.best(Math.max(p - seek, this.prev + 1, this.base), p + seek);
      const x = this.x, o = p - this.base;
      const block = new Float32Array(hop);
      for (let i = 0; i < hop; i++) {
        block[i] = this.tail[i] + hann[i] * x[o + i];
        this.tail[i] = hann[hop + i] * x[o + hop + i];
      }
      out.push({pcm: block, media: this.mediaAt(p), rate});
      this.prev = p;
      this.pos = plain ? p + hop : this.pos + hop * rate;
    }
    // Keep what the next window may still start at or compare with.
    const keep = Math.min(this.prev < 0 ? this.base : this.prev + hop, Math.round(this.pos) - seek);
    const drop = Math.max(0, Math.min(keep - this.base, this.len));
    if (drop > 0) {
      this.x.copyWithin(0, drop, this.len);
      this.len -= drop;
      this.base += drop;
      while (this.marks.length > 1 && this.marks[1].index <= this.base) this.marks.shift();
    }
    return out;
  }

  // best is the start in [lo, hi] whose first half most resembles the
  // audio that followed the last window (normalized cross-correlation,
  // every other sample, every other lag, then the neighbours).
  best(lo, hi) {
    const x = this.x, b = this.base, ref = this.prev + hop - b;
    const score = (p) => {
      let c = 0, e = 1e-9;
      for (let i = 0, o = p - b; i < hop; i += 2) {
        const v = x[o + i];
        c += v * x[ref + i];
        e += v * v;
      }
      return c / Math.sqrt(e);
    };
    let at = lo, top = -Infinity;
    for (let p = lo; p <= hi; p += 2) {
      const s = score(p);
      if (s > top) { top = s; at = p; }
    }
    for (const p of [at - 1, at + 1]) {
      if (p >= lo && p <= hi) {
        const s = score(p);
        if (s > top) { top = s; at = p; }
      }
    }
    return at;
  }

  mediaAt(index) {
    let m = this.marks[0];
    for (const k of this.marks) {
      if (k.index > index) break;
      m = k;
    }
    return m.media + (index - m.index) / 48000;
  }
}

const isTag = (p, tag) => p.length >= 8 && String.fromCharCode(...p.subarray(0, 8)) === tag;

// playLowLatency plays the live stream at url. onState gets 'buffering',
// 'playing', 'ended' or 'error' (with the Error). context, if given, is an
// AudioContext made during the user's gesture, so it may start. from, if
// given, rewinds: 'start' (the space's beginning) or a negative duration
// such as '-5m' (docs/API.md); the player then catches up (see above),
// decoding no more than buffer seconds ahead (maxBuffered). It returns
// stop(), the AnalyserNode the audio passes through, behind() and stats().
export async function playLowLatency(url, {onState = () => {}, target = 0.25, context = null, from = '', buffer = maxBuffered} = {}) {
  const ac = context || new AudioContext({sampleRate: 48000, latencyHint: 'interactive'});
  const analyser = ac.createAnalyser();
  analyser.connect(ac.destination);
  const abort = new AbortController();
  const st = {bytes: 0, packets: 0, frames: 0, underruns: 0, dropped: 0, preSkip: 0, resumes: 0, holes: 0, waits: 0};
  let next = -1;        // the AudioContext time the next frame starts at
  let skip = 0;         // samples of pre-skip still to drop
  let state = '';
  let done = false;
  // How far behind live: the stream's first audio was behind0 behind the
  // live edge when its response came (at t0, on performance.now()'s clock,
  // in seconds), and the live edge moves on with the wall clock while the
  // media plays. marks say which media second plays at which AudioContext
  // time.
  let behind0 = null, t0 = 0, media0 = null;
  let marks = [];       // {at, dur, media, rate}, in play order
  // A rewound stream catches up, played faster, until it is near live;
  // the stretcher keeps the pitch. A live one never needs it.
  const stretcher = from ? new Stretcher() : null;
  let catching = !!from;
  let rate = 1;

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

  // The chunks' timestamps are the media time of their first sample, from
  // the pages' granule positions (in µs): a hole, a paused recording's
  // gap or a dropped frame moves the media on, and behind() with it.
  function schedule(ad) {
    if (done) return;
    let n = ad.numberOfFrames;
    const pcm = new Float32Array(n);
    ad.copyTo(pcm, {planeIndex: 0, format: 'f32-planar'});
    let media = ad.timestamp / 1e6;
    let off = 0;
    if (skip > 0) {
      off = Math.min(skip, n);
      skip -= off;
      n -= off;
      if (n === 0) return;
      media += off / ad.sampleRate;
    }
    if (media0 === null) media0 = media;
    const data = off ? pcm.subarray(off) : pcm;
    if (!stretcher) {
      play(data, media, 1);
      return;
    }
    const blocks = stretcher.push(data, media, rateFor(media));
    for (const b of blocks) play(b.pcm, b.media, b.rate);
  }

  // rateFor picks the speed of audio at media seconds from how far behind
  // live it will be when it plays: 1.5 more than a minute behind, 1.25
  // more than catchUpFrom, 1 once near live (under liveWithin behind, or
  // with little queued: the live edge itself).
  function rateFor(media) {
    if (!catching || behind0 === null) return 1;
    const now = ac.currentTime;
    const at = Math.max(next, now + target);
    const b = behind0 + (performance.now() / 1000 - t0) + (at - now) - (media - media0);
    if (b > fastFrom) rate = fastRate;
    else if (b > catchUpFrom) rate = catchUpRate;
    else if (b < liveWithin || at - now < 1) {
      rate = 1;
      catching = false;
    } else rate = Math.min(rate, catchUpRate);
    return rate;
  }

  function play(pcm, media, speed) {
    const now = ac.currentTime;
    // At the start and after an underrun, anchor target ahead of now:
    // enough for the next write to arrive before this audio runs out.
    if (next < now + 0.005) {
      if (next >= 0) st.underruns++;
      next = now + target;
      setState('playing');
    } else if (!catching && next > now + target + maxAhead) {
      st.dropped++;
      return;
    }
    const buf = ac.createBuffer(1, pcm.length, 48000);
    buf.copyToChannel(pcm, 0);
    const src = ac.createBufferSource();
    src.buffer = buf;
    src.connect(analyser);
    src.start(next);
    marks.push({at: next, dur: buf.duration, media, rate: speed});
    if (marks.length > 1000) played(); // drops those played: nobody may ask behind()
    next += buf.duration;
    st.frames++;
  }

  // played is the media second playing now, or null before any.
  function played() {
    const now = ac.currentTime;
    let i = 0;
    while (i + 1 < marks.length && marks[i + 1].at <= now) i++;
    if (i > 0) marks = marks.slice(i);
    const m = marks[0];
    if (!m || m.at > now) return null;
    return m.media + Math.min(now - m.at, m.dur) * m.rate;
  }

  // ahead is the audio decoded or waiting to be, in seconds: what a
  // rewound stream's reading waits on.
  const ahead = () => Math.max(0, next - ac.currentTime) + decoder.decodeQueueSize * 0.02;

  // An audio page's sequence number is its chunk + 2 (docs/API.md): the
  // chunks say where a resumed stream must start, which repeated ones to
  // drop, and whether any never came (a hole).
  let lastChunk = -1;
  let page = -1;        // the page the packets come from
  let dropPage = false; // a page already played, sent again on a resume
  let ended = false;    // the EOS page came
  let ts = 0;           // the next packet's start, in samples, where a page has no granule
  const onPacket = (p, pg, at) => {
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
    if (at < 0) at = ts;
    ts = at + opusSamples(p);
    waiting.push(new EncodedAudioChunk({type: 'key', timestamp: Math.round(at * 1e6 / 48000), data: p}));
  };

  // pump decodes the packets read while less than buffer seconds wait to
  // be played. One read may bring minutes of a rewound stream's past: they
  // wait here, a few KB, not decoded into megabytes of samples.
  let waiting = [];
  let taken = 0;
  function pump() {
    while (taken < waiting.length && !done && (!stretcher || ahead() < buffer)) {
      decoder.decode(waiting[taken++]);
    }
    if (taken === waiting.length) {
      waiting = [];
      taken = 0;
    }
  }

  function fail(e) {
    if (done) return;
    abort.abort();
    setState('error', e instanceof Error ? e : new Error(String(e)));
  }

  const sep = url.includes('?') ? '&' : '?';
  const first = streamParams + (from ? '&from=' + encodeURIComponent(from) : '');
  // A stream broken while it plays its past goes back to where it broke
  // (from=-…, with a second to spare: the pages already played are
  // dropped by their sequence numbers), since a ring holds only the last
  // seconds; a live one resumes from the chunk after its last (from_seq).
  const open = () => {
    let q = first;
    if (lastChunk >= 0) {
      const back = catching && behind0 !== null && media0 !== null
        ? behind0 + (performance.now() / 1000 - t0) - (ts / 48000 - media0) + 1 : 0;
      q = back > resumeInRing ? 'flush=100ms&from=-' + Math.round(back * 1000) + 'ms' : 'flush=100ms&from_seq=' + (lastChunk + 1);
    }
    return fetch(url + sep + q, {signal: abort.signal, cache: 'no-store'});
  };
  setState('buffering');
  let r = await open();
  if (!r.ok || !r.body) {
    let msg = 'the server answered ' + r.status;
    try {
      const j = await r.json();
      if (j && j.message) msg = j.message;
    } catch (_) { /* not JSON: the status says it */ }
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  // A server without Amphi-Behind: a live stream starts about its burst
  // behind; how far a rewound one went is unknown.
  t0 = performance.now() / 1000;
  behind0 = Number.parseFloat(r.headers.get('Amphi-Behind'));
  if (!Number.isFinite(behind0)) behind0 = from ? null : 0.1;
  await ac.resume().catch(() => {});

  // resume asks for the stream again from where it broke, for resumeFor;
  // it returns the new response, or null.
  async function resume() {
    for (const until = Date.now() + resumeFor; Date.now() < until && !abort.signal.aborted;) {
      try {
        const again = await open();
        if (again.ok && again.body) return again;
      } catch (_) { /* the network: try again */ }
      await sleep(resumeEvery);
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
          // Read no further while packets wait to be decoded: the server
          // sends a rewound stream's past as fast as it is read, and TCP's
          // backpressure, not this page's memory, holds the rest.
          if (waiting.length) {
            st.waits++;
            while (!done && waiting.length) {
              await sleep(250);
              pump();
            }
            if (done) return;
          }
          const {value, done: eof} = await reader.read();
          if (eof) break;
          st.bytes += value.length;
          ogg.push(value);
          pump();
        }
      } catch (e) {
        if (abort.signal.aborted) return;
        broke = e;
      }
      if (ended) {
        while (!done && waiting.length) {
          await sleep(250);
          pump();
        }
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

  // behind is how far behind the live edge what the listener hears now
  // is, in seconds, or null before it plays or where it is unknown.
  function behind() {
    const m = played();
    if (m === null || behind0 === null || media0 === null) return null;
    const out = ac.outputLatency || ac.baseLatency || 0;
    return Math.max(0, behind0 + (performance.now() / 1000 - t0) - (m - media0) + out);
  }

  return {
    analyser,
    from,
    behind,
    stop() {
      if (done) return;
      done = true;
      abort.abort();
      if (decoder.state !== 'closed') decoder.close();
      if (!context) ac.close().catch(() => {});
    },
    stats() {
      return {...st, ahead: next >= 0 ? Math.max(0, next - ac.currentTime) : 0,
        baseLatency: ac.baseLatency || 0, outputLatency: ac.outputLatency || 0,
        rate: catching ? rate : 1, catching, behind: behind(), behindAtStart: behind0,
        undecoded: waiting.length - taken};
    },
  };
}
