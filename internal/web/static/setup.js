// The account page, for two one-time links whose secret rides in the URL
// fragment, which never reaches the server's logs:
//   #token=…  the first admin's link from the server's log: POST /auth/setup;
//   #invite=… a host or admin invite an admin made: POST /auth/accept.
// Either way the form's email and password create the account, which the
// server signs in, and the page goes on to /host.
import {$, say, apiError, retryAfter} from './account.js';

const params = new URLSearchParams(location.hash.slice(1));
const token = params.get('token') || '';
const invite = token ? '' : (params.get('invite') || '');
const secret = token || invite;
const used = 'This setup link was already used or has expired, or an admin already exists. '
  + 'Sign in instead, or run “amphi admin create” on the server.';

function refuse(text) {
  say(text, true);
  $('submit').disabled = true;
  if (document.getElementById('refused')) return;
  const p = document.createElement('p');
  p.id = 'refused';
  const a = document.createElement('a');
  a.href = '/signin';
  a.textContent = 'Go to sign-in';
  p.append(a);
  $('status').after(p);
}

// inviteGone words a 410 from /auth/accept: the server's message says
// whether the invite expired or was used, and the page says what to do.
function inviteGone(msg) {
  if (/expire/i.test(msg)) return 'This invite expired. Ask the admin who sent it for a new one.';
  if (/used/i.test(msg)) return 'This invite was already used. If it was you, sign in; otherwise ask an admin for a new one.';
  return 'This invite no longer works: ' + msg;
}

// A new link pasted into this tab changes only the fragment, which does
// not load the page again: load it, so the page reads the new secret.
window.addEventListener('hashchange', () => location.reload());

if (invite) {
  $('heading').textContent = 'Create your host account';
  $('intro').textContent = 'An admin of this server invited you to host spaces. '
    + 'Choose the email and password you will sign in with. The invite works once.';
  $('submit').textContent = 'Create my account';
  document.title = 'Create your account · amphi';
} else if (!token) {
  refuse('This link has no setup token or invite: use the whole link, which ends in #token=… or #invite=….');
}

$('form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!secret) return;
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
  if ($('confirm').value !== password) {
    say('The two passwords differ: type the same password twice.', true);
    $('confirm').focus();
    return;
  }
  $('submit').disabled = true;
  say(invite ? 'Creating your account…' : 'Creating the admin…');
  try {
    const r = await fetch(invite ? '/auth/accept' : '/auth/setup', {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(invite ? {invite, email, password} : {token, email, password}),
    });
    if (r.ok) {
      // The secret is spent: drop it from the address bar and history.
      history.replaceState(null, '', '/setup');
      say((invite ? 'Account created' : 'Admin created') + ' and signed in. Opening your spaces…');
      location.assign('/host');
      return;
    }
    if (r.status === 410) return refuse(invite ? inviteGone(await apiError(r)) : used);
    if (r.status === 401) {
      return refuse(invite
        ? 'This invite link is not valid: check you copied all of it, or ask an admin for a new one.'
        : 'This setup link is not valid: check you copied all of it from the server\'s log.');
    }
    if (r.status === 429) say('Too many attempts. ' + retryAfter(r), true);
    else say('Could not create the account: ' + await apiError(r), true);
  } catch (err) {
    say('Could not reach the server: ' + err.message, true);
  }
  $('submit').disabled = false;
});
