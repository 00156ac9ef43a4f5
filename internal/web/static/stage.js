// The room's live state, shared by the listener's page and the speaker's:
// polling GET /spaces/{id}/state and drawing what it says (who is on
// stage, how many listen, the reactions of the last seconds).
//
// Every listener's page polls the same answer, which the server encodes
// once a second and marks cacheable for a second: a plain fetch lets the
// browser's cache and any cache in front of the server share it.

// docs/API.md: pages poll the state every 2 s, or after the server's
// poll_after_ms, which grows with the crowd so a big one costs the server
// no more polls a second than a small one.
const visibleMs = 2000;
const maxVisibleMs = 30000;
const hiddenMs = 10000;  // a tab nobody looks at needs no fresh stage

// reactionKinds are the reactions the API takes, in the order the pages
// show them. label names the button for screen readers; plural the counts.
export const reactionKinds = [
  {kind: 'clap', emoji: '👏', label: 'Clap', plural: 'claps'},
  {kind: 'heart', emoji: '❤️', label: 'Heart', plural: 'hearts'},
  {kind: 'laugh', emoji: '😂', label: 'Laugh', plural: 'laughs'},
  {kind: 'fire', emoji: '🔥', label: 'Fire', plural: 'fires'},
  {kind: 'wave', emoji: '👋', label: 'Wave', plural: 'waves'},
];

// apiProblem reads the API's error body ({error: {code, message}}), or
// makes one from the status when the body is not the API's.
export async function apiProblem(r) {
  try {
    const body = await r.json();
    if (body && body.error && body.error.message) return {code: body.error.code || '', message: body.error.message};
  } catch (_) { /* not JSON */ }
  return {code: '', message: 'the server answered ' + r.status};
}

// sentence makes an API message ("rate limited") read as a sentence.
export function sentence(msg) {
  const s = String(msg || '').trim();
  if (!s) return '';
  const t = s[0].toUpperCase() + s.slice(1);
  return /[.!?…]$/.test(t) ? t : t + '.';
}

// count groups digits by three with a no-break space ("1 234"), which
// reads the same in every locale and never wraps inside a number.
export function count(n) {
  return String(Math.max(0, Math.floor(Number(n) || 0))).replace(/\B(?=(\d{3})+(?!\d))/g, '\u00a0');
}

export function listenersText(n) {
  return count(n) + ' listening';
}

// pollState fetches the state now and then every 2 s or as the server asks
// (at least 10 s while the page is hidden, and at once when it shows again), calling onState with each
// answer and onError with a failed Response, or null when the network
// failed. stop() ends it.
export function pollState(spaceURL, onState, onError = () => {}) {
  let timer = 0, stopped = false, busy = false, every = visibleMs;
  const schedule = () => {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(tick, document.hidden ? Math.max(hiddenMs, every) : every);
  };
  async function tick() {
    if (stopped || busy) return;
    clearTimeout(timer);
    busy = true;
    try {
      const r = await fetch(spaceURL + '/state', {headers: {Accept: 'application/json'}});
      if (r.ok) {
        const st = await r.json();
        if (Number.isFinite(st.poll_after_ms)) every = Math.min(maxVisibleMs, Math.max(visibleMs, st.poll_after_ms));
        await onState(st);
      }
      else await onError(r);
    } catch (_) {
      try { await onError(null); } catch (_) { /* the next round tries again */ }
    } finally {
      busy = false;
      schedule();
    }
  }
  const onVisibility = () => { if (document.hidden) schedule(); else tick(); };
  document.addEventListener('visibilitychange', onVisibility);
  tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisibility);
    },
    now: tick,
  };
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// speakerItem builds one stage entry. Speaking shows as a ring around the
// initial (a shape, animated unless the reader asked for less motion) and
// as the words "speaking" for screen readers; host and muted are words.
function speakerItem() {
  const li = el('li', 'speaker');
  const avatar = el('span', 'avatar');
  avatar.setAttribute('aria-hidden', 'true');
  const who = el('span', 'who');
  const name = el('span', 'name');
  const host = el('span', 'tag host', 'host');
  const muted = el('span', 'tag muted', 'muted');
  const speaking = el('span', 'sr speaking-text', 'speaking');
  who.append(name, ' ', host, ' ', muted, ' ', speaking);
  li.append(avatar, who);
  return li;
}

// renderStage draws the speakers into list (a <ul>), keyed by speaker id
// so that an unchanged speaker's element, and its ring's animation, stay
// put from one poll to the next. empty, if given, shows when nobody is on
// stage. Each <li> carries data-id, data-speaking, data-muted and data-host
// ("true"/"false") for styles and tests.
export function renderStage(list, empty, speakers) {
  const have = new Map();
  for (const li of list.querySelectorAll(':scope > li.speaker')) have.set(li.dataset.id, li);
  const items = (speakers || []).map((sp, i) => {
    const key = String(sp.id || 'speaker-' + i);
    const li = have.get(key) || speakerItem();
    have.delete(key);
    const name = sp.name || 'Speaker';
    li.dataset.id = key;
    li.dataset.speaking = String(!!sp.speaking);
    li.dataset.muted = String(!!sp.muted);
    li.dataset.host = String(!!sp.host);
    li.querySelector('.avatar').textContent = [...name.trim()][0] || '?';
    li.querySelector('.name').textContent = name;
    li.querySelector('.tag.host').hidden = !sp.host;
    li.querySelector('.tag.muted').hidden = !sp.muted;
    li.querySelector('.speaking-text').hidden = !sp.speaking;
    return li;
  });
  list.replaceChildren(...items);
  if (empty) empty.hidden = items.length > 0;
}

// renderReactions draws one chip per kind with a count ("👏 12"), in
// reactionKinds' order; a chip whose count grew pops once.
export function renderReactions(list, counts) {
  const old = new Map();
  for (const li of list.querySelectorAll(':scope > li')) old.set(li.dataset.kind, li);
  const items = [];
  for (const k of reactionKinds) {
    const n = Math.floor(Number(counts && counts[k.kind]) || 0);
    if (n <= 0) continue;
    let li = old.get(k.kind);
    if (!li) {
      li = el('li', 'chip');
      li.dataset.kind = k.kind;
      const seen = el('span');
      seen.setAttribute('aria-hidden', 'true');
      li.append(seen, el('span', 'sr'));
    }
    const before = Number(li.dataset.count || 0);
    li.dataset.count = String(n);
    li.firstChild.textContent = k.emoji + '\u00a0' + count(n);
    li.lastChild.textContent = count(n) + ' ' + (n === 1 ? k.label.toLowerCase() : k.plural);
    if (n > before) {
      // Restart the pop: removing the class and reading layout lets the
      // same animation run again.
      li.classList.remove('pop');
      void li.offsetWidth;
      li.classList.add('pop');
    }
    items.push(li);
  }
  list.replaceChildren(...items);
  list.hidden = items.length === 0;
}
