// What the sign-in, setup, host and console pages share: reading API
// errors, the status line, the CSRF cookie, the signed-in account, safe
// ?next= paths, and this browser's host keys.
//
// Host keys: creating a space returns its host token once, and the server
// keeps only its hash. The pages keep it in this browser's localStorage,
// under "amphi.host.<space id>", so this browser is the space's host key:
// another browser, or this one with its site data cleared, cannot run the
// space's console. Anyone who can read this browser's storage can too.

const hostPrefix = 'amphi.host.';

export const $ = (x) => document.getElementById(x);

// say puts text in the page's status line, a polite live region.
export function say(text, error = false) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', error);
}

// apiError reads the message of an error answer (docs/API.md, "Errors").
export async function apiError(r) {
  try {
    const body = await r.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return 'the server answered ' + r.status;
}

// retryAfter words a 429's Retry-After for people.
export function retryAfter(r) {
  const s = parseInt(r.headers.get('Retry-After') || '', 10);
  if (!(s > 0)) return 'Wait a little and try again.';
  return 'Try again in ' + (s < 60 ? s + ' seconds.' : Math.ceil(s / 60) + ' minutes.');
}

// csrf returns the amphi_csrf cookie, which a signed-in browser must echo
// in X-CSRF-Token on every state-changing request.
export function csrf() {
  for (const c of document.cookie.split(';')) {
    const [k, ...v] = c.trim().split('=');
    if (k === 'amphi_csrf') return decodeURIComponent(v.join('='));
  }
  return '';
}

export function saveHost(space) {
  try {
    localStorage.setItem(hostPrefix + space.id, JSON.stringify({
      token: space.host_token, title: space.title, created_at: space.created_at || new Date().toISOString(),
    }));
    return true;
  } catch (_) {
    return false; // storage full or disabled
  }
}

export function hostKey(id) {
  try {
    const v = JSON.parse(localStorage.getItem(hostPrefix + id) || 'null');
    return v && v.token ? v : null;
  } catch (_) {
    return null;
  }
}

// hostSpaces lists the spaces this browser holds a host key for, newest first.
export function hostSpaces() {
  const out = [];
  try {
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      if (!k || !k.startsWith(hostPrefix)) continue;
      const v = hostKey(k.slice(hostPrefix.length));
      if (v) out.push({id: k.slice(hostPrefix.length), ...v});
    }
  } catch (_) { /* storage disabled: nothing to list */ }
  return out.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
}

// copy puts the text of a read-only input on the clipboard; where the
// Clipboard API is missing or refused (plain http on a LAN address), it
// selects the text so the person can copy it themselves.
export async function copy(input) {
  try {
    await navigator.clipboard.writeText(input.value);
    say('Copied the link.');
  } catch (_) {
    input.focus();
    input.select();
    say('The link is selected: press Ctrl+C (⌘C on a Mac) to copy it.');
  }
}

// me returns the signed-in account ({user, csrf, expires_at}), null when
// nobody is signed in (401), and throws when the server cannot say.
export async function me() {
  const r = await fetch('/auth/me', {headers: {Accept: 'application/json'}});
  if (r.status === 401) return null;
  if (!r.ok) throw new Error(await apiError(r));
  return r.json();
}

// localPath returns next when it is a path on this site, '' otherwise:
// a ?next= that named another origin (or a protocol-relative //host)
// would make the sign-in page an open redirect.
export function localPath(next) {
  if (!next || next[0] !== '/' || next[1] === '/' || next[1] === '\\') return '';
  try {
    const u = new URL(next, location.origin);
    return u.origin === location.origin ? u.pathname + u.search + u.hash : '';
  } catch (_) {
    return '';
  }
}
