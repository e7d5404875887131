// The web console's logic: signs in with the operator token, reads the
// operator API every POLL_MS and redraws, and sends rollout actions after a
// confirmation. Data reaches the page only through textContent and element
// properties, never as HTML, and the Content-Security-Policy allows no inline
// script or style.
'use strict';

const POLL_MS = 2000;
const MODELS_SHOWN_MAX = 50;  // each model costs one request per poll
const TOKEN_KEY = 'meridian.operator_token';

// The actions each phase allows (the state machine of rollout/rollout.h).
const ACTIONS_BY_PHASE = {
  running: ['promote', 'pause', 'abort', 'rollback'],
  paused: ['resume', 'abort', 'rollback'],
  completed: ['rollback'],
};
const ACTIVE_PHASES = ['running', 'paused'];

const $ = (id) => document.getElementById(id);

let selectedRollout = null;  // the id shown in the detail section
let shownRollout = null;     // that rollout as last drawn: what an action applies to
let pendingAction = null;    // the action awaiting confirmation
let pollTimer = null;
let refreshSeq = 0;          // only the newest refresh draws

// --- The API ---------------------------------------------------------------

// An error answer of the API: {"error":{"code":…,"message":…}}.
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

async function api(method, path, body) {
  const headers = {Authorization: 'Bearer ' + token()};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  const text = await response.text();
  let data = null;
  try {
    data = JSON.parse(text);
  } catch {
    // not JSON: reported below when the status is an error
  }
  if (!response.ok) {
    const e = data && data.error ? data.error : {code: 'http_' + response.status, message: text.slice(0, 200)};
    throw new ApiError(response.status, e.code, e.message);
  }
  return data;
}

const pathOf = (...segments) => '/' + segments.map(encodeURIComponent).join('/');

// A wrong or missing token: the page signs out rather than poll with it.
const isAuthError = (e) => e instanceof ApiError && (e.status === 401 || e.code === 'permission_denied');

// {value} or {error}: one section's failure does not hide the others.
const settle = (promise) => promise.then((value) => ({value}), (error) => ({error}));

// --- Formatting ------------------------------------------------------------

const isoTime = (ms) => (ms ? new Date(ms).toISOString() : '—');
const yesNo = (b) => (b ? 'yes' : 'no');

function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
}

function formatDuration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
  if (ms < 3600000) return (ms / 60000).toFixed(1) + ' min';
  return (ms / 3600000).toFixed(1) + ' h';
}

// --- Drawing ---------------------------------------------------------------

function element(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

// A table row; a cell is a Node or text.
function row(cells) {
  const tr = document.createElement('tr');
  for (const cell of cells) {
    const td = document.createElement('td');
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell === null || cell === undefined ? '' : String(cell);
    tr.append(td);
  }
  return tr;
}

function fillTable(id, rows, emptyText) {
  const table = $(id);
  table.hidden = false;
  if (rows.length === 0) {
    const td = element('td', emptyText, 'muted');
    td.colSpan = table.tHead.rows[0].cells.length;
    const tr = document.createElement('tr');
    tr.append(td);
    rows = [tr];
  }
  table.tBodies[0].replaceChildren(...rows);
}

function showNote(id, text) {
  $(id).textContent = text || '';
  $(id).hidden = !text;
}

function showError(text) {
  showNote('error', text);
}

// A section's failure, shown in its note; true when there was one.
function sectionFailed(noteId, result) {
  if (!result.error) {
    showNote(noteId, '');
    return false;
  }
  const e = result.error;
  showNote(noteId, e instanceof ApiError ? `${e.message} (${e.status} ${e.code})` : String(e));
  return true;
}

function progress(value, max) {
  const span = element('span', undefined, 'bar');
  const bar = document.createElement('progress');
  bar.max = Math.max(max, 1);
  bar.value = value;
  span.append(bar, ` ${value} / ${max}`);
  return span;
}

function phaseBadge(phase) {
  return element('span', phase, 'phase phase-' + phase);
}

function drawRollouts(result) {
  if (sectionFailed('rollouts-note', result)) {
    // A region answers 403 region_read_only: rollouts live at the origin.
    $('rollouts').hidden = true;
    $('rollout-detail').hidden = true;
    return;
  }
  const {list, detail, events} = result.value;
  const rows = list.slice().reverse().map((r) => {
    const pick = element('button', r.id, 'link');
    pick.type = 'button';
    pick.addEventListener('click', () => {
      selectedRollout = r.id;
      refreshNow();
    });
    const tr = row([pick, r.model, r.channel, r.target_version, r.regions.join(', ') || 'all',
                    r.stages_percent.join(' → '), phaseBadge(r.phase), isoTime(r.updated_ms)]);
    tr.dataset.rolloutId = r.id;
    if (r.id === selectedRollout) tr.className = 'selected';
    return tr;
  });
  fillTable('rollouts', rows, 'No rollouts yet.');
  drawRolloutDetail(detail, events);
}

function drawRolloutDetail(detail, events) {
  shownRollout = detail;
  $('rollout-detail').hidden = !detail;
  if (!detail) return;
  const {spec, state} = detail;
  $('detail-id').textContent = detail.id;
  $('detail-phase').textContent = state.phase;
  $('detail-phase').className = 'phase phase-' + state.phase;
  $('detail-summary').textContent =
      `${spec.model} channel ${spec.channel}: ${spec.previous_version || '(none)'} → ${spec.target_version}, ` +
      `stage ${state.stage} (${detail.stages[state.stage].percent} %) of stages 0–${detail.stages.length - 1}, ` +
      `since ${isoTime(state.updated_ms)}`;
  const allowed = ACTIONS_BY_PHASE[state.phase] || [];
  for (const button of $('actions').querySelectorAll('button')) {
    button.hidden = !allowed.includes(button.dataset.action);
  }
  const current = ACTIVE_PHASES.includes(state.phase) ? state.stage : -1;
  fillTable('stages', detail.stages.map((s) => {
    // Stages are numbered from 0, as in the CLI and the events' running(0).
    const tr = row([s.stage, s.percent + ' %', s.region || 'all', s.eligible, progress(s.downloading, s.eligible),
                    progress(s.updated, s.eligible), progress(s.healthy, s.eligible), progress(s.failed, s.eligible), s.gate]);
    if (s.stage === current) tr.className = 'current';
    return tr;
  }), 'No stages.');
  fillTable('rollout-regions', detail.regions.map((r) => row([r.region || '(none)', r.terminals,
                                                             progress(r.updated, r.terminals), r.failed, r.wave])),
            'No known terminals in its regions yet.');
  fillTable('events', events.slice().reverse().map((e) => row([e.seq, isoTime(e.time_ms), e.actor, e.action,
                                                               e.before, e.after, e.reason])),
            'No events.');
}

function drawRegions(result) {
  if (sectionFailed('regions-note', result)) return;
  const data = result.value;
  $('daemon-role').textContent = data.role === 'region' ? `region ${data.region}` : 'origin';
  const up = data.upstream;
  showNote('upstream', up ? `Upstream ${up.url}: reachable ${yesNo(up.reachable)}, last sync ${isoTime(up.last_sync_ms)}` +
                            `, reports pending ${up.reports_pending}${up.last_error ? ', last error: ' + up.last_error : ''}`
                          : '');
  fillTable('regions', data.regions.map((r) => row([r.region, yesNo(r.reachable), yesNo(r.healthy),
                                                    formatDuration(r.lag_ms), r.behind, formatBytes(r.stored_bytes),
                                                    r.terminals, isoTime(r.last_seen_ms), r.last_error])),
            'No region follows this daemon.');
}

function drawFleet(result) {
  if (sectionFailed('fleet-note', result)) return;
  const rows = [];
  for (const c of result.value.channels) {
    for (const v of c.versions) rows.push(row([c.model, c.channel, v.version || '(none yet)', v.terminals]));
  }
  fillTable('fleet', rows, 'No terminal has asked for a target yet.');
  if (result.value.truncated) showNote('fleet-note', 'Only the first versions are listed.');
}

function drawModels(result) {
  if (sectionFailed('models-note', result)) return;
  const {models, total} = result.value;
  fillTable('models', models.map((m) => row([m.model, m.versions.join(', ')])), 'No model is published yet.');
  if (total > models.length) showNote('models-note', `The first ${models.length} of ${total} models.`);
}

// --- Loading ---------------------------------------------------------------

// The rollout list and the selected rollout (by default the newest active
// one, else the newest) with its audit events.
async function loadRollouts() {
  const list = (await api('GET', '/v1/rollouts')).rollouts;
  if (!list.some((r) => r.id === selectedRollout)) {
    const active = list.filter((r) => ACTIVE_PHASES.includes(r.phase));
    const newest = active.length ? active : list;
    selectedRollout = newest.length ? newest[newest.length - 1].id : null;
  }
  if (!selectedRollout) return {list, detail: null, events: []};
  const [detail, events] = await Promise.all([api('GET', pathOf('v1', 'rollouts', selectedRollout)),
                                             api('GET', pathOf('v1', 'rollouts', selectedRollout, 'events'))]);
  return {list, detail, events: events.events};
}

async function loadModels() {
  const names = (await api('GET', '/v1/models')).models;
  const shown = names.slice(0, MODELS_SHOWN_MAX);
  const models = await Promise.all(
      shown.map(async (model) => ({model, versions: (await api('GET', pathOf('v1', 'models', model, 'versions'))).versions})));
  return {models, total: names.length};
}

async function refresh() {
  const seq = ++refreshSeq;
  const [rollouts, regions, fleet, models] = await Promise.all([
    settle(loadRollouts()), settle(api('GET', '/v1/regions')), settle(api('GET', '/v1/fleet')), settle(loadModels()),
  ]);
  if (seq !== refreshSeq || !token()) return;  // a newer refresh draws, or signed out meanwhile
  const results = [rollouts, regions, fleet, models];
  const denied = results.find((r) => isAuthError(r.error));
  if (denied) {
    signOut(`Signed out: ${denied.error.message} (${denied.error.status} ${denied.error.code})`);
    return;
  }
  const unreachable = results.find((r) => r.error && !(r.error instanceof ApiError));
  showError(unreachable ? `Cannot reach the daemon: ${unreachable.error.message}` : '');
  drawRollouts(rollouts);
  drawRegions(regions);
  drawFleet(fleet);
  drawModels(models);
  $('updated').textContent = 'updated ' + new Date().toISOString();
}

async function poll() {
  await refresh();
  clearTimeout(pollTimer);  // a refreshNow during this refresh scheduled one: keep a single chain
  if (token()) pollTimer = setTimeout(poll, POLL_MS);
}

function refreshNow() {
  clearTimeout(pollTimer);
  poll();
}

// --- Signing in and out ----------------------------------------------------

function showSignedIn(signedIn) {
  $('sign-in-section').hidden = signedIn;
  $('console').hidden = !signedIn;
  $('sign-out').hidden = !signedIn;
}

function signOut(message) {
  clearTimeout(pollTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  showSignedIn(false);
  $('updated').textContent = '';
  showError(message || '');
}

async function signIn(event) {
  event.preventDefault();  // nothing is submitted anywhere (form-action 'none')
  sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
  $('token').value = '';
  showError('');
  showSignedIn(true);
  refreshNow();
}

// --- Actions ---------------------------------------------------------------

function askToConfirm(action) {
  if (!shownRollout) return;
  pendingAction = {action, id: shownRollout.id};
  $('confirm-text').textContent =
      `${action} rollout ${shownRollout.id} (${shownRollout.spec.model} → ${shownRollout.spec.target_version}, ` +
      `now ${shownRollout.state.phase})? The audit log records it under the name of the token you signed in with.`;
  $('confirm-reason').value = '';
  $('confirm').showModal();
}

async function confirmAction() {
  const {action, id} = pendingAction;
  const reason = $('confirm-reason').value.trim();
  $('confirm').close();
  pendingAction = null;
  try {
    await api('POST', pathOf('v1', 'rollouts', id, action), {reason});
    showError('');
  } catch (e) {
    if (isAuthError(e)) {
      signOut(`Signed out: ${e.message}`);
      return;
    }
    showError(`${action} ${id} refused: ${e.message}${e instanceof ApiError ? ` (${e.status} ${e.code})` : ''}`);
  }
  refreshNow();
}

function start() {
  $('sign-in').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', () => signOut(''));
  for (const button of $('actions').querySelectorAll('button')) {
    button.addEventListener('click', () => askToConfirm(button.dataset.action));
  }
  $('confirm-ok').addEventListener('click', confirmAction);
  $('confirm-cancel').addEventListener('click', () => {
    pendingAction = null;
    $('confirm').close();
  });
  showSignedIn(Boolean(token()));
  if (token()) refreshNow();
}

start();
