// The host page: checks the sign-in (GET /auth/me), creates spaces
// (POST /spaces with the session cookie and X-CSRF-Token) and lists the
// spaces whose host key this browser holds, each linking to its console.
import {$, say, apiError, retryAfter, csrf, saveHost, hostSpaces} from './account.js';

function item(sp) {
  const li = document.createElement('li');
  const a = document.createElement('a');
  a.href = '/s/' + encodeURIComponent(sp.id) + '/host';
  const title = document.createElement('span');
  title.className = 'title';
  title.textContent = sp.title || sp.id;
  const meta = document.createElement('span');
  meta.className = 'meta';
  const at = sp.created_at ? new Date(sp.created_at) : null;
  meta.textContent = 'Console' + (at && !isNaN(at) ? ' · created ' + at.toLocaleString([], {dateStyle: 'medium', timeStyle: 'short'}) : '');
  a.append(title, meta);
  li.append(a);
  return li;
}

function listYours() {
  const spaces = hostSpaces();
  $('yours').replaceChildren(...spaces.map(item));
  $('yours-empty').hidden = spaces.length > 0;
}

// rfc3339 turns a datetime-local value, in this browser's zone, into UTC.
function rfc3339(local) {
  const d = new Date(local);
  if (isNaN(d)) return null;
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
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
      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf()},
      body: JSON.stringify(body),
    });
    if (r.status === 201) {
      const sp = await r.json();
      if (!saveHost(sp)) {
        say('The space was created, but this browser would not store its host key. Its console will not work here.', true);
      } else {
        say('Created “' + sp.title + '”. Its console is in your spaces below.');
      }
      $('form').reset();
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

// checkSignIn shows the form to a signed-in host, or a sign-in link,
// saying why when the server says the session expired.
async function checkSignIn() {
  try {
    const r = await fetch('/auth/me', {headers: {Accept: 'application/json'}});
    if (r.status === 401) {
      const msg = await apiError(r);
      $('host-panel').hidden = true;
      $('signout').hidden = true;
      $('signin').hidden = false;
      $('who').textContent = '';
      say(/expired/i.test(msg) ? 'Your session expired: sign in again to host.' : 'Sign in to host a space.', true);
      return false;
    }
    if (!r.ok) throw new Error(await apiError(r));
    const me = await r.json();
    $('who').textContent = 'Signed in as ' + me.user.email + (me.user.role === 'admin' ? ' (admin)' : '') + '.';
    $('signin').hidden = true;
    $('host-panel').hidden = false;
    $('signout').hidden = false;
    say('');
    listYours();
    return true;
  } catch (err) {
    say('Could not check your sign-in: ' + err.message, true);
    return false;
  }
}

async function signOut() {
  try {
    const r = await fetch('/auth/signout', {method: 'POST', headers: {'X-CSRF-Token': csrf()}});
    if (!r.ok && r.status !== 401) throw new Error(await apiError(r));
    location.assign('/signin');
  } catch (err) {
    say('Could not sign out: ' + err.message, true);
  }
}

$('form').addEventListener('submit', create);
$('signout').addEventListener('click', signOut);
checkSignIn();
