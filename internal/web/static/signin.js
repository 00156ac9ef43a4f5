// The sign-in page: posts the form to POST /auth/signin, which sets the
// session and CSRF cookies, then goes to the host page, or to ?next= when
// that is a path on this site (a console sends people here that way).
import {$, say, apiError, retryAfter, localPath} from './account.js';

const next = localPath(new URLSearchParams(location.search).get('next') || '');

$('form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const email = $('email').value.trim();
  const password = $('password').value;
  if (!email || !password) {
    say('Enter your email and your password.', true);
    (email ? $('password') : $('email')).focus();
    return;
  }
  $('submit').disabled = true;
  say('Signing in…');
  try {
    const r = await fetch('/auth/signin', {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({email, password}),
    });
    if (r.ok) {
      say(next ? 'Signed in. Going back…' : 'Signed in. Opening your spaces…');
      location.assign(next || '/host');
      return;
    }
    if (r.status === 401) {
      say('Wrong email or password. Check both and try again.', true);
      $('password').select();
      $('password').focus();
    } else if (r.status === 429) {
      say('Too many sign-in attempts from this network. ' + retryAfter(r), true);
    } else {
      say('Could not sign in: ' + await apiError(r), true);
    }
  } catch (err) {
    say('Could not reach the server: ' + err.message, true);
  }
  $('submit').disabled = false;
});
