#!/usr/bin/python3
"""Integration: the web console in a real headless Chromium against real
meridiand processes on loopback, an origin and a region following it.
Publishes two versions, starts a rollout with the CLI, signs in to the
origin's console (a wrong token first), sees the rollout running and the
region reachable, pauses the rollout through the confirmation dialog, and
checks through the API that the daemon paused it, with the reason typed in
the page and, as actor, the name of the named credential signed in with. The region's console says plainly that rollouts are
controlled at the origin. Also checks the console's headers, and that the
origin's page ran without a Content-Security-Policy violation or a failed
request. Saves a screenshot of each console and prints their paths.

Needs Debian's chromium, chromium-driver and python3-selenium: when one is
missing the test fails (it does not skip). Binaries come from MERIDIAND and
MERIDIAN (meson sets them); the screenshot goes to MERIDIAN_UI_SCREENSHOT.
"""
import base64
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
WAIT_S = 15          # for anything the page must show
DAEMON_START_S = 30
ROLLOUT_ID = 'r-console'
ACTOR = 'ui-test'
REASON = 'paused from the console test'
ISO_UTC = r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z'  # as the page writes times
POLICY = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def fail(message):
    print('FAIL: ' + message, file=sys.stderr)
    sys.exit(1)


try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:
    fail(f'python3-selenium is missing ({e}): apt-get install python3-selenium')
for program, package in ((CHROMIUM, 'chromium'), (CHROMEDRIVER, 'chromium-driver')):
    if not os.access(program, os.X_OK):
        fail(f'{program} is missing: apt-get install {package}')


def env_path(name):
    path = os.environ.get(name)
    if not path or not os.access(path, os.X_OK):
        fail(f'{name} must name the built binary (meson test sets it)')
    return path


class Daemon:
    """A meridiand on 127.0.0.1 (ephemeral port) with its own data directory."""

    def __init__(self, tmp, name):
        self.tmp = os.path.join(tmp, name)
        os.mkdir(self.tmp)
        self.meridiand = env_path('MERIDIAND')
        self.meridian = env_path('MERIDIAN')
        self.data = os.path.join(self.tmp, 'data')
        self.key = os.path.join(self.tmp, 'release.key')
        self.process = None
        self.url = None

    def init_origin(self):
        """A data directory whose root trusts a fresh release key."""
        run([self.meridian, 'keygen', self.key])
        run([self.meridiand, 'init', '--data', self.data, '--release-key', self.key + '.pub'])

    def init_region(self, origin):
        run([self.meridiand, 'init', '--data', self.data, '--root', os.path.join(origin.data, 'root.json')])

    def start(self, *extra_args):
        port_file = os.path.join(self.tmp, 'port')
        with open(os.path.join(self.tmp, 'meridiand.log'), 'wb') as log:
            self.process = subprocess.Popen([self.meridiand, '--data', self.data, '--listen', '127.0.0.1:0',
                                             '--port-file', port_file, *extra_args], stdout=log, stderr=log)
        deadline = time.monotonic() + DAEMON_START_S
        while not os.path.exists(port_file):
            if self.process.poll() is not None or time.monotonic() > deadline:
                fail('meridiand did not start: ' + self.log())
            time.sleep(0.05)
        with open(port_file) as f:  # written atomically once listening
            self.url = f'http://127.0.0.1:{int(f.read().strip())}'
        while True:
            try:
                if self.request('GET', '/healthz')[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                fail('meridiand did not become healthy: ' + self.log())
            time.sleep(0.05)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self):
        with open(os.path.join(self.tmp, 'meridiand.log'), errors='replace') as f:
            return f.read()[-2000:]

    def token(self, role):
        with open(os.path.join(self.data, role + '.token')) as f:
            return f.read().strip()

    def cli(self, role, *args):
        return run([self.meridian, '--server', self.url, '--token-file', os.path.join(self.data, role + '.token'),
                    *args])

    def request(self, method, path, token=None, headers=None):
        """(status, headers, body) without following redirects."""
        host, port = self.url.removeprefix('http://').split(':')
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        all_headers = dict(headers or {})
        if token:
            all_headers['Authorization'] = 'Bearer ' + token
        try:
            connection.request(method, path, headers=all_headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def api(self, path, role='operator'):
        status, _, body = self.request('GET', path, self.token(role))
        if status != 200:
            fail(f'GET {path}: {status} {body[:300]!r}')
        return json.loads(body)


def run(argv):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        fail(f'{" ".join(argv)} exited {result.returncode}: {result.stderr.strip()}')
    return result.stdout


def check(condition, message):
    if not condition:
        fail(message)


def check_console_headers(daemon):
    """Redirects, the policy, and 404 JSON for a file the console lacks."""
    for path in ('/', '/ui'):
        status, headers, _ = daemon.request('GET', path)
        check(status == 302 and headers['Location'] == '/ui/', f'GET {path}: {status} to {headers["Location"]}')
    status, headers, body = daemon.request('GET', '/ui/')
    check(status == 200, f'GET /ui/: {status}')
    check(headers['Content-Type'] == 'text/html; charset=utf-8', 'GET /ui/: ' + headers['Content-Type'])
    check(headers['Content-Security-Policy'] == POLICY, f'GET /ui/ policy: {headers["Content-Security-Policy"]}')
    check(headers['X-Content-Type-Options'] == 'nosniff', 'GET /ui/ without nosniff')
    status, _, body = daemon.request('GET', '/ui/nothing.js')
    check(status == 404 and json.loads(body)['error']['code'] == 'not_found', f'GET /ui/nothing.js: {status} {body!r}')


def terminal_credentials(daemon, ids):
    """Enrols a key for each terminal (meridian terminals import) and gets its
    credential with a request signed as meridian-agent signs it
    (docs/api.md, Terminal credentials)."""
    keys = {i: Ed25519PrivateKey.generate() for i in ids}

    def b64(raw):
        return base64.b64encode(raw).decode()

    def public(key):
        return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    provisioning = os.path.join(daemon.tmp, 'terminals.csv')
    with open(provisioning, 'w') as f:
        f.writelines(f'{i},{b64(public(keys[i]))}\n' for i in ids)
    daemon.cli('operator', 'terminals', 'import', provisioning)
    credentials = []
    for i in ids:
        now = int(time.time() * 1000)
        message, kind = f'{i} {now}'.encode(), b'application/vnd.meridian.credential-request.v1'
        pae = b'DSSEv1 %d %s %d %s' % (len(kind), kind, len(message), message)
        header = f'Meridian-Terminal {b64(public(keys[i]))}.{now}.{b64(keys[i].sign(pae))}'
        status, _, body = daemon.request('POST', f'/v1/terminals/{i}/credential', headers={'Authorization': header})
        check(status == 200, f'credential of {i}: {status} {body!r}')
        credentials.append(json.loads(body)['credential'])
    return credentials


def prepare_fleet(daemon):
    """Two versions, a completed first rollout, terminals on 1.0.0, and a
    running staged rollout to 1.1.0."""
    model = os.path.join(daemon.tmp, 'model.bin')
    for version, seed in (('1.0.0', b'a'), ('1.1.0', b'b')):
        with open(model, 'wb') as f:
            f.write(seed * 300_000)
        daemon.cli('publisher', 'publish', '--key', daemon.key, '--model', 'demo', '--version', version, model)
    daemon.cli('operator', 'rollout', 'start', 'demo', '1.0.0', '--id', 'r-first', '--stages', '100')
    daemon.cli('operator', 'rollout', 'promote', 'r-first')
    credentials = terminal_credentials(daemon, [f'pos-{n}' for n in range(20)])
    for n in range(20):
        status, _, body = daemon.request('GET', f'/v1/terminals/pos-{n}/target?model=demo&current=1.0.0',
                                         credentials[n])
        check(status == 200, f'target of pos-{n}: {status} {body!r}')
    daemon.cli('operator', 'rollout', 'start', 'demo', '1.1.0', '--id', ROLLOUT_ID, '--stages', '10,50,100')
    check(daemon.api('/v1/rollouts/' + ROLLOUT_ID)['state']['phase'] == 'running', 'the rollout is not running')


def open_browser(tmp):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--window-size=1280,2200',
                '--user-data-dir=' + os.path.join(tmp, 'chromium'), '--no-first-run', '--disable-extensions'):
        options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def waiter(driver):
    # The page redraws its tables every poll: an element found may be gone when read.
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))


def region_row(driver, region):
    """The cells of the regions table's row of `region`, or None."""
    for tr in driver.find_elements(By.CSS_SELECTOR, '#regions tbody tr'):
        cells = [td.text for td in tr.find_elements(By.TAG_NAME, 'td')]
        if cells[0] == region:
            return cells
    return None


def wait_for_text(wait, element_id, text):
    wait.until(ec.text_to_be_present_in_element((By.ID, element_id), text), f'#{element_id} never showed {text!r}')


def text_of(driver, element_id):
    return driver.find_element(By.ID, element_id).text


def sign_in(driver, token):
    driver.find_element(By.ID, 'token').send_keys(token)
    driver.find_element(By.ID, 'sign-in-button').click()


def check_browser_errors(driver, expected=None):
    """No error in the browser's log since the last look (a policy violation,
    a failed request) but those containing `expected`."""
    errors = [e['message'] for e in driver.get_log('browser') if e['level'] == 'SEVERE']
    unexpected = [m for m in errors if expected is None or expected not in m]
    check(not unexpected, 'the browser logged errors: ' + '; '.join(unexpected))


def drive_origin_console(driver, daemon, screenshot):
    wait = waiter(driver)
    driver.get(daemon.url + '/ui/')

    # A wrong token: the page says why and asks again.
    sign_in(driver, 'not-the-operator-token')
    wait_for_text(wait, 'error', 'permission_denied')
    wait.until(ec.visibility_of_element_located((By.ID, 'sign-in')), 'the sign-in form is not shown again')
    check_browser_errors(driver, expected='status of 403')  # the refused requests

    # A person's own credential: its name is the actor of the pause.
    sign_in(driver, daemon.cli('operator', 'tokens', 'create', '--role', 'operator', '--name', ACTOR).strip())
    wait_for_text(wait, 'detail-id', ROLLOUT_ID)
    wait_for_text(wait, 'detail-phase', 'running')
    wait_for_text(wait, 'fleet', '1.0.0')
    wait_for_text(wait, 'models', '1.1.0')
    wait.until(lambda d: (region_row(d, 'sg') or [''])[1:3] == ['yes', 'yes'], 'region sg not shown reachable')
    check(text_of(driver, 'daemon-role') == 'origin', 'role badge: ' + text_of(driver, 'daemon-role'))
    check(text_of(driver, 'error') == '', 'an error is shown: ' + text_of(driver, 'error'))
    check(len(driver.find_elements(By.CSS_SELECTOR, '#stages tbody tr')) == 3, 'not three stages shown')

    driver.find_element(By.CSS_SELECTOR, '#actions button[data-action="pause"]').click()
    wait.until(ec.visibility_of_element_located((By.ID, 'confirm')), 'no confirmation dialog')
    dialog_text = text_of(driver, 'confirm-text')
    check('pause rollout ' + ROLLOUT_ID in dialog_text, 'dialog: ' + dialog_text)
    check(daemon.api('/v1/rollouts/' + ROLLOUT_ID)['state']['phase'] == 'running', 'paused before confirmation')
    driver.find_element(By.ID, 'confirm-reason').send_keys(REASON)
    driver.find_element(By.ID, 'confirm-ok').click()

    wait_for_text(wait, 'detail-phase', 'paused')
    wait_for_text(wait, 'events', REASON)
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, '#actions button[data-action="resume"]')),
               'resume not offered')
    check(not driver.find_element(By.CSS_SELECTOR, '#actions button[data-action="pause"]').is_displayed(),
          'pause still offered for a paused rollout')
    check(re.fullmatch('updated ' + ISO_UTC, text_of(driver, 'updated')), 'last updated: ' + text_of(driver, 'updated'))
    event_time = driver.find_element(By.CSS_SELECTOR, '#events tbody tr td:nth-child(2)').text
    check(re.fullmatch(ISO_UTC, event_time), 'event time: ' + event_time)
    driver.save_screenshot(screenshot)
    check_browser_errors(driver)


def drive_region_console(driver, region, screenshot):
    """Another origin for the browser (another port): signed out, and the
    region's own operator token."""
    wait = waiter(driver)
    driver.get(region.url + '/ui/')
    sign_in(driver, region.token('operator'))
    wait_for_text(wait, 'rollouts-note', 'region_read_only')
    wait_for_text(wait, 'daemon-role', 'region sg')
    wait_for_text(wait, 'upstream', 'reachable yes')
    wait_for_text(wait, 'models', '1.1.0')  # replicated
    check(not driver.find_element(By.ID, 'rollout-detail').is_displayed(), 'a region shows rollout controls')
    driver.save_screenshot(screenshot)


def check_paused_by_console(daemon):
    rollout = daemon.api('/v1/rollouts/' + ROLLOUT_ID)
    check(rollout['state']['phase'] == 'paused', 'the daemon says ' + rollout['state']['phase'])
    last = daemon.api(f'/v1/rollouts/{ROLLOUT_ID}/events')['events'][-1]
    check((last['action'], last['actor'], last['reason']) == ('pause', ACTOR, REASON), f'last event: {last}')


def main():
    started = time.monotonic()
    screenshot = os.path.abspath(os.environ.get('MERIDIAN_UI_SCREENSHOT') or
                                 os.path.join(tempfile.gettempdir(), 'meridian-ui-test.png'))
    region_screenshot = screenshot.removesuffix('.png') + '-region.png'
    tmp = tempfile.mkdtemp(prefix='meridian-ui-')
    origin, region = Daemon(tmp, 'origin'), Daemon(tmp, 'sg')
    driver = None
    try:
        origin.init_origin()
        origin.start()
        region.init_region(origin)
        region.start('--role', 'region', '--region', 'sg', '--upstream', origin.url,
                     '--upstream-token-file', os.path.join(origin.data, 'mirror.token'))
        check_console_headers(origin)
        prepare_fleet(origin)
        driver = open_browser(tmp)
        drive_origin_console(driver, origin, screenshot)
        check_paused_by_console(origin)
        drive_region_console(driver, region, region_screenshot)
    finally:
        if driver is not None:
            driver.quit()
        region.stop()
        origin.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f'screenshot: {screenshot}')
    print(f'screenshot of the region: {region_screenshot}')
    print(f'ui_test passed in {time.monotonic() - started:.1f} s')


if __name__ == '__main__':
    main()
