// The first-admin page: the one-time token rides in the URL fragment
// (#token=…), which never reaches the server's logs; the form posts it with
// the email and password to POST /auth/setup, which signs the new admin in.
import {$, say, apiError, retryAfter} from './account.js';

const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
const used = 'This setup link was already used or has expired, or an admin already exists. '
  + 'Sign in instead, or run “amphi admin create” on the server.';

function refuse(text) {
  say(text, true);
  $('submit').disabled = true;
  const p = document.createElement('p');
  const a = document.createElement('a');
  a.href = '/signin';
  a.textContent = 'Go to sign-in';
  p.append(a);
  $('status').after(p);
}

if (!token) refuse('This link has no setup token: use the whole link from the server\'s log, which ends in #token=….');

$('form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!token) return;
  const email = $('email').value.trim();
  const password = $('password').value;
  if (!email) {
    say('Enter an email.', true);
    $('email').focus();
    return;
  }
  if (password.length < 12) {
    say('The password needs at least 12 characters.', true);
    $('password').focus();
    return;
  }
  $('submit').disabled = true;
  say('Creating the admin…');
  try {
    const r = await fetch('/auth/setup', {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({token, email, password}),
    });
    if (r.ok) {
      // The token is spent: drop it from the address bar and history.
      history.replaceState(null, '', '/setup');
      say('Admin created and signed in. Opening your spaces…');
      location.assign('/host');
      return;
    }
    if (r.status === 410) return refuse(used);
    if (r.status === 401) return refuse('This setup link is not valid: check you copied all of it from the server\'s log.');
    if (r.status === 429) say('Too many attempts. ' + retryAfter(r), true);
    else say('Could not create the admin: ' + await apiError(r), true);
  } catch (err) {
    say('Could not reach the server: ' + err.message, true);
  }
  $('submit').disabled = false;
});
