"""The web console in a real browser: sign in, browse and query events, run a command from a
form generated from the slice's description, deploy a slice, see an event arrive live; a bad
token, a malformed query and a failed deploy show clear messages; a hot boundary shows while
clients queue on it."""

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BINARY = os.path.join(TARGET, "release", "counterpoint")
SLICES = os.path.join(TARGET, "wasm32-wasip2", "release")
SHOTS = os.path.join(TARGET, "console-screenshots")
TOKEN = "console-test-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Console(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(SHOTS, exist_ok=True)
        cls.dir = tempfile.TemporaryDirectory()
        token_hash = subprocess.run([BINARY, "hash-token", TOKEN], capture_output=True, text=True, check=True).stdout.strip()
        port = free_port()
        cls.base = f"http://127.0.0.1:{port}"
        config = os.path.join(cls.dir.name, "counterpoint.toml")
        with open(config, "w") as f:
            f.write(f'listen = "127.0.0.1:{port}"\ndata_dir = "{cls.dir.name}/data"\n[tenants.acme]\ntokens_sha256 = ["{token_hash}"]\n')
        cls.server = subprocess.Popen([BINARY, "serve", "--config", config], stderr=subprocess.PIPE, text=True)
        for line in cls.server.stderr:
            if "serving on" in line:
                break
        for name in ("orders", "inventory"):
            with open(os.path.join(SLICES, f"{name}.wasm"), "rb") as f:
                cls.api("PUT", f"/slices/{name}", f.read())
        cls.api("POST", "/slices/orders/commands/place-order", json.dumps({"order_id": "o-1", "customer_id": "ada"}).encode())
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,900"):
            options.add_argument(arg)
        cls.browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        cls.wait = WebDriverWait(cls.browser, 15)

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()
        cls.server.terminate()
        cls.server.wait(timeout=30)
        cls.dir.cleanup()

    @classmethod
    def api(cls, method, path, body=None):
        request = urllib.request.Request(cls.base + "/v1/t/acme" + path, data=body, method=method,
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read() or b"null")

    def find(self, css):
        return self.browser.find_element(By.CSS_SELECTOR, css)

    def text_of(self, css, contains):
        self.wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), contains))
        return self.find(css).text

    def shot(self, name):
        self.browser.save_screenshot(os.path.join(SHOTS, f"{name}.png"))

    def sign_in(self, token):
        self.browser.get(self.base + "/console")
        self.browser.execute_script("sessionStorage.clear()")
        self.browser.get(self.base + "/console")
        self.find("#tenant").clear()
        self.find("#tenant").send_keys("acme")
        self.find("#token").clear()
        self.find("#token").send_keys(token)
        self.find("#go").click()

    def tab(self, name):
        self.find(f"nav button[data-tab={name}]").click()

    def test_1_a_bad_token_is_told_so(self):
        self.sign_in("not-the-token")
        message = self.text_of("#signin-msg", "Could not sign in")
        self.assertIn("unauthorized", message)
        self.shot("bad-token")

    def test_2_slices_commands_events_live_and_deploys(self):
        self.sign_in(TOKEN)
        self.wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#slices tbody tr")))
        self.assertIn("place-order", self.find("#slices").text)
        self.shot("slices")

        # A command from the form generated from inventory's description.
        self.tab("run")
        select = Select(self.find("#target"))
        select.select_by_visible_text("inventory · command · receive-stock")
        self.find("#form input[name=sku]").send_keys("pear")
        self.find("#form input[name=qty]").send_keys("7")
        self.find("#form button[type=submit]").click()
        result = self.text_of("#result", "attempts")
        self.assertIn('"positions"', result)
        self.shot("command")

        # Browse and query events.
        self.tab("events")
        self.find("#items .types").send_keys("StockReceived")
        self.find("#read").click()
        self.text_of("#events-msg", "1 events")
        self.assertIn("pear", self.find("#events").text)
        # A malformed query gets a clear message.
        self.find("#limit").clear()
        self.find("#limit").send_keys("-3")
        self.find("#read").click()
        self.assertIn("invalid_input", self.text_of("#events-msg", "invalid_input"))
        self.find("#limit").clear()
        self.find("#limit").send_keys("50")
        self.shot("events")

        # An event arrives live.
        self.find("#items .types").clear()
        self.find("#tail").click()
        self.text_of("#events-msg", "tailing")
        time.sleep(0.5)
        self.api("POST", "/slices/orders/commands/place-order", json.dumps({"order_id": "o-live", "customer_id": "cy"}).encode())
        self.text_of("#events", "o-live")
        self.shot("live")
        self.find("#tail").click()

        # Deploy a slice from a file; a broken component is refused with the reason.
        self.tab("slices")
        bogus = os.path.join(self.dir.name, "broken.wasm")
        with open(bogus, "wb") as f:
            f.write(b"\\0asm not really a component")
        self.find("#file").send_keys(bogus)
        self.assertIn("invalid_component", self.text_of("#deploy-msg", "Deploy refused"))
        self.shot("failed-deploy")
        self.find("#file").send_keys(os.path.join(SLICES, "hostile.wasm"))
        self.text_of("#deploy-msg", "Deployed hostile")
        self.text_of("#slices", "hostile")
        self.shot("deployed")

        # A read model queried from its form: it answers from the state the host keeps.
        self.tab("run")
        Select(self.find("#target")).select_by_visible_text("inventory · read model · stock-levels")
        self.find("#form input[name=sku]").send_keys("pear")
        self.find("#form button[type=submit]").click()
        self.assertIn('"available": 7', self.text_of("#result", "available"))
        self.shot("read-model")

        # Automations and read models, and the charts at a glance.
        self.tab("automations")
        self.text_of("#automations", "reserve-on-confirm")
        self.text_of("#readmodels", "stock-levels")
        self.find("#readmodels button[data-rebuild]").click()
        self.text_of("#readmodels-msg", "Rebuilding")
        self.tab("glance")
        # The charts read /metrics, which a tenant's token does not open.
        self.text_of("#charts", "sign in with the admin token")
        self.text_of("#hot-none", "no boundary is contended")
        self.shot("glance")

    def test_3_a_hot_boundary_shows_while_clients_queue_on_it(self):
        self.api("POST", "/slices/orders/commands/place-order", json.dumps({"order_id": "hot", "customer_id": "c"}).encode())
        self.sign_in(TOKEN)
        self.tab("glance")
        stop = threading.Event()

        added, refused = [], []

        def add_items(client):
            n = 0
            while not stop.is_set():
                n += 1
                item = {"order_id": "hot", "sku": f"sku-{client}-{n}", "qty": 1, "price": 1}
                try:
                    self.api("POST", "/slices/orders/commands/add-item", json.dumps(item).encode())
                    added.append(n)
                except urllib.error.HTTPError as e:
                    refused.append(e.code)
                    time.sleep(0.01)

        clients = [threading.Thread(target=add_items, args=(c,)) for c in range(16)]
        for client in clients:
            client.start()
        try:
            row = self.text_of("#hot tbody", "order_id:hot")
            self.assertIn("ItemAdded", row)
            self.shot("hot-boundaries")
        finally:
            stop.set()
            for client in clients:
                client.join()
        self.assertTrue(added)
        self.assertEqual(set(refused) - {429}, set(), "only over the tenant's rate, if ever")
        # Drained: nothing is hot any more, and the panel's next refresh says so.
        self.assertEqual(self.api("GET", "/hot-boundaries"), {"hot_boundaries": []})
        self.text_of("#hot-none", "no boundary is contended")


if __name__ == "__main__":
    unittest.main()
