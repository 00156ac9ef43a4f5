// The host page: checks the sign-in (GET /auth/me), creates spaces
// (POST /spaces with the session cookie and X-CSRF-Token), lists "your
// spaces" (the account's, GET /spaces?mine=true, merged with those whose
// host key this browser holds), each linking to its console, and lets an
// admin make invite links for new hosts (POST /auth/invites).
import {$, say, apiError, retryAfter, csrf, saveHost, hostSpaces, copy} from './account.js';

const descriptionMax = 2000;
const stateWords = {live: 'On air', scheduled: 'Scheduled', ended: 'Ended'};
let account = null;    // GET /auth/me's body while signed in
let mine = [];         // the account's spaces, from the server

const when = (s) => {
  const d = s ? new Date(s) : null;
  return d && !isNaN(d) ? d.toLocaleString([], {dateStyle: 'medium', timeStyle: 'short'}) : '';
};

// meta words a space's state and time; a space known only from this
// browser's host keys has no state here, only when it was created.
function meta(sp) {
  if (!sp.state) return 'Console' + (when(sp.created_at) ? ' · created ' + when(sp.created_at) : '');
  const parts = [stateWords[sp.state] || sp.state];
  if (sp.state === 'scheduled' && sp.scheduled_at) parts.push('starts ' + when(sp.scheduled_at));
  else if (sp.state === 'live' && sp.started_at) parts.push('since ' + when(sp.started_at));
  else if (sp.state === 'ended' && sp.ended_at) parts.push(when(sp.ended_at));
  else if (when(sp.created_at)) parts.push('created ' + when(sp.created_at));
  return parts.join(' · ');
}

function item(sp) {
  const li = document.createElement('li');
  li.dataset.id = sp.id;
  if (sp.state) li.dataset.state = sp.state;
  const a = document.createElement('a');
  a.href = '/s/' + encodeURIComponent(sp.id) + '/host';
  const title = document.createElement('span');
  title.className = 'title';
  title.textContent = sp.title || sp.id;
  const m = document.createElement('span');
  m.className = 'meta';
  m.textContent = meta(sp);
  a.append(title, m);
  li.append(a);
  return li;
}

// listYours merges the account's spaces with this browser's host keys,
// newest first: the server's copy wins, since it knows the state.
function listYours() {
  const byId = new Map();
  for (const sp of hostSpaces()) byId.set(sp.id, sp);
  for (const sp of mine) byId.set(sp.id, {...byId.get(sp.id), ...sp});
  const spaces = [...byId.values()].sort((a, b) => String(b.created_at || '').localeCompare(String(a.created_at || '')));
  $('yours').replaceChildren(...spaces.map(item));
  $('yours-empty').hidden = spaces.length > 0;
}

async function loadMine() {
  try {
    const r = await fetch('/spaces?mine=true', {headers: {Accept: 'application/json'}});
    if (r.status === 401) return; // signed out meanwhile: checkSignIn says so on the next action
    if (!r.ok) throw new Error(await apiError(r));
    mine = (await r.json()).spaces || [];
    $('mine-status').textContent = '';
    listYours();
  } catch (err) {
    $('mine-status').textContent = 'Could not list your account\'s spaces: ' + err.message
      + '. Those created in this browser are listed.';
  }
}

// rfc3339 turns a datetime-local value, in this browser's zone, into UTC.
function rfc3339(local) {
  const d = new Date(local);
  if (isNaN(d)) return null;
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function countDescription() {
  const n = $('description').value.length;
  const c = $('description-count');
  c.textContent = n + ' of ' + descriptionMax + ' characters';
  c.classList.toggle('error', n > descriptionMax);
}

async function create(e) {
  e.preventDefault();
  const title = $('title').value.trim();
  if (!title) {
    say('Give the space a title.', true);
    $('title').focus();
    return;
  }
  const body = {title};
  const description = $('description').value.trim();
  if (description.length > descriptionMax) {
    say('The description is too long: at most ' + descriptionMax + ' characters.', true);
    $('description').focus();
    return;
  }
  if (description) body.description = description;
  if ($('at').value) {
    const at = rfc3339($('at').value);
    if (!at) {
      say('The start time is not a date and time.', true);
      $('at').focus();
      return;
    }
    body.scheduled_at = at;
  }
  $('create').disabled = true;
  say('Creating the space…');
  try {
    const r = await fetch('/spaces', {
      method: 'POST',
      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': (account && account.csrf) || csrf()},
      body: JSON.stringify(body),
    });
    if (r.status === 201) {
      const sp = await r.json();
      if (!saveHost(sp)) {
        say('Created “' + sp.title + '”. This browser would not store its host key: open its console while signed in.', true);
      } else {
        say('Created “' + sp.title + '”. Its console is in your spaces below.');
      }
      $('form').reset();
      countDescription();
      mine = [sp, ...mine.filter((x) => x.id !== sp.id)];
      listYours();
      const link = $('yours').querySelector('a[href="/s/' + encodeURIComponent(sp.id) + '/host"]');
      if (link) link.focus();
    } else if (r.status === 401) {
      await checkSignIn();
    } else if (r.status === 429) {
      say('Too many spaces created from this network. ' + retryAfter(r), true);
    } else {
      say('Could not create the space: ' + await apiError(r), true);
    }
  } catch (err) {
    say('Could not reach the server: ' + err.message, true);
  }
  $('create').disabled = false;
}

async function inviteHost(e) {
  e.preventDefault();
  const b = $('invite-host');
  const role = $('invite-role').value;
  b.disabled = true;
  say('Making an invite link…');
  try {
    const r = await fetch('/auth/invites', {
      method: 'POST',
      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': (account && account.csrf) || csrf()},
      body: JSON.stringify({role}),
    });
    if (r.status === 201) {
      const inv = await r.json();
      $('invite-link').value = location.origin + inv.url;
      $('invite-expires').textContent = 'For a new ' + (inv.role || role) + '. '
        + (when(inv.expires_at) ? 'Works once, until ' + when(inv.expires_at) + '.' : 'Works once.');
      $('invite-host-panel').hidden = false;
      say('An invite link is ready below: copy it and send it to one person.');
      $('copy-invite').focus();
    } else if (r.status === 401) {
      await checkSignIn();
    } else if (r.status === 403) {
      say('The server refused: ' + await apiError(r) + '. Only admins invite hosts; try signing in again.', true);
    } else if (r.status === 429) {
      say('Too many invites. ' + retryAfter(r), true);
    } else {
      say('Could not make an invite link: ' + await apiError(r), true);
    }
  } catch (err) {
    say('Could not reach the server: ' + err.message, true);
  }
  b.disabled = false;
}

// checkSignIn shows the form to a signed-in host, or a sign-in link,
// saying why when the server says the session expired.
async function checkSignIn() {
  try {
    const r = await fetch('/auth/me', {headers: {Accept: 'application/json'}});
    if (r.status === 401) {
      const msg = await apiError(r);
      account = null;
      $('host-panel').hidden = true;
      $('signout').hidden = true;
      $('signin').hidden = false;
      $('who').textContent = '';
      say(/expired/i.test(msg) ? 'Your session expired: sign in again to host.' : 'Sign in to host a space.', true);
      return false;
    }
    if (!r.ok) throw new Error(await apiError(r));
    account = await r.json();
    const admin = account.user.role === 'admin';
    $('who').textContent = 'Signed in as ' + account.user.email + (admin ? ' (admin)' : '') + '.';
    $('signin').hidden = true;
    $('host-panel').hidden = false;
    $('signout').hidden = false;
    $('invite-host-section').hidden = !admin;
    say('');
    listYours();
    loadMine();
    return true;
  } catch (err) {
    say('Could not check your sign-in: ' + err.message, true);
    return false;
  }
}

async function signOut() {
  try {
    const r = await fetch('/auth/signout', {method: 'POST', headers: {'X-CSRF-Token': (account && account.csrf) || csrf()}});
    if (!r.ok && r.status !== 401) throw new Error(await apiError(r));
    location.assign('/signin');
  } catch (err) {
    say('Could not sign out: ' + err.message, true);
  }
}

$('form').addEventListener('submit', create);
$('description').addEventListener('input', countDescription);
$('invite-host-form').addEventListener('submit', inviteHost);
$('copy-invite').addEventListener('click', () => copy($('invite-link')));
$('signout').addEventListener('click', signOut);
checkSignIn();
