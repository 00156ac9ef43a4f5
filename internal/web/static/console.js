// A space's host console: starts and ends the space and mints speaker
// links with the space's host token, which this browser stored when it
// created the space (see account.js); shows the listener link, the
// speakers on stage (GET /spaces/{id}) and the server's verdict (GET /ops),
// both refreshed every 5 s.
import {$, say, apiError, hostKey, copy} from './account.js';

const refreshMs = 5000;
const id = decodeURIComponent(location.pathname.split('/')[2] || '');
const spaceURL = '/spaces/' + encodeURIComponent(id);
const key = hostKey(id);
const verdictWords = {
  healthy: 'healthy',
  overloaded: 'overloaded: more demand than capacity',
  under_attack: 'under attack',
  failing_internally: 'failing internally',
};
let space = null;
let busy = false;

function host(method, path, body) {
  const headers = {Authorization: 'Bearer ' + key.token};
  if (body) headers['Content-Type'] = 'application/json';
  return fetch(spaceURL + path, {method, headers, body: body ? JSON.stringify(body) : undefined});
}

function show(sp) {
  space = sp;
  $('title').textContent = sp.title;
  document.title = 'Console: ' + sp.title + ' · amphi';
  const badge = $('state');
  badge.dataset.state = sp.state;
  badge.textContent = {live: 'On air', scheduled: 'Scheduled', ended: 'Ended'}[sp.state] || sp.state;
  let when = '';
  if (sp.state === 'scheduled' && sp.scheduled_at) when = 'Scheduled for ' + new Date(sp.scheduled_at).toLocaleString([], {dateStyle: 'medium', timeStyle: 'short'});
  else if (sp.state === 'live' && sp.started_at) when = 'On air since ' + new Date(sp.started_at).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
  else if (sp.state === 'ended' && sp.ended_at) when = 'Ended ' + new Date(sp.ended_at).toLocaleString([], {dateStyle: 'medium', timeStyle: 'short'});
  $('when').textContent = when;
  $('start').hidden = sp.state !== 'scheduled';
  $('end').hidden = sp.state === 'ended';
  $('invite').disabled = sp.state === 'ended';
  $('speakers').textContent = String(sp.speakers || 0);
}

async function load() {
  const r = await fetch(spaceURL, {headers: {Accept: 'application/json'}});
  if (r.status === 404) {
    $('title').textContent = 'No such space';
    $('console').hidden = true;
    say('This space does not exist. It may have been removed, or the link is wrong.', true);
    return false;
  }
  if (!r.ok) throw new Error(await apiError(r));
  show(await r.json());
  return true;
}

async function verdict() {
  const v = $('verdict');
  try {
    const r = await fetch('/ops', {headers: {Accept: 'application/json'}});
    if (!r.ok) throw new Error(String(r.status));
    const body = await r.json();
    v.dataset.verdict = body.verdict;
    v.textContent = verdictWords[body.verdict] || body.verdict;
  } catch (_) {
    v.dataset.verdict = '';
    v.textContent = 'unknown (the server did not answer)';
  }
}

async function act(button, path, doing, done) {
  if (busy) return;
  busy = true;
  button.disabled = true;
  say(doing);
  try {
    const r = await host('POST', path);
    if (!r.ok) {
      const msg = await apiError(r);
      say((r.status === 401 || r.status === 403)
        ? 'The server refused this browser\'s host key for this space: ' + msg
        : 'Could not do it: ' + msg, true);
    } else {
      say(done);
    }
    await load();
  } catch (err) {
    say('Could not reach the server: ' + err.message, true);
  } finally {
    busy = false;
    button.disabled = false;
  }
}

async function invite() {
  const b = $('invite');
  b.disabled = true;
  say('Making a speaker link…');
  try {
    const r = await host('POST', '/tokens', {role: 'speaker'});
    if (r.status !== 201) throw new Error(await apiError(r));
    const {token} = await r.json();
    $('speak').value = location.origin + '/s/' + encodeURIComponent(id) + '/speak#token=' + encodeURIComponent(token);
    $('invite-panel').hidden = false;
    say('A new speaker link is ready below: copy it and send it to your speaker.');
    $('copy-speak').focus();
  } catch (err) {
    say('Could not make a speaker link: ' + err.message, true);
  } finally {
    b.disabled = space && space.state === 'ended';
  }
}

$('start').addEventListener('click', () => act($('start'), '/start', 'Going live…', 'On air.'));
$('end').addEventListener('click', () => {
  if (!confirm('End “' + (space ? space.title : id) + '” for everyone? Speakers are cut off and it cannot go live again.')) return;
  act($('end'), '/end', 'Ending the space…', 'The space has ended. Its recording is on its page.');
});
$('invite').addEventListener('click', invite);
$('copy-share').addEventListener('click', () => copy($('share')));
$('copy-speak').addEventListener('click', () => copy($('speak')));

(async () => {
  $('space-link').href = '/s/' + encodeURIComponent(id);
  if (!key) {
    $('title').textContent = 'No host key here';
    say('This browser holds no host key for this space: the console works only in the browser that created it. '
      + 'Listeners can still use the space\'s page.', true);
    return;
  }
  $('share').value = location.origin + '/s/' + encodeURIComponent(id);
  try {
    if (!await load()) return;
  } catch (err) {
    say('Could not load the space: ' + err.message, true);
    return;
  }
  $('console').hidden = false;
  verdict();
  setInterval(() => {
    if (document.hidden) return;
    load().catch(() => {});
    verdict();
  }, refreshMs);
})();
