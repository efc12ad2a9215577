// Browser test of the dashboard: starts localstripe (a fake Stripe API) and `ledger demo` (a
// small deterministic history, its own database `ledger_e2e`, connected to that localstripe),
// drives headless Chromium (Debian's `chromium`, through playwright-core) against the page,
// checks that the figures shown equal the API's, that a refund and a cancellation from the page
// are carried out at localstripe, and saves screenshots to target/. Run it with `just e2e` (see
// e2e/README.md).
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, openSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const screenshots = join(root, "target");
const failures = [];

function check(condition, message) {
  if (!condition) {
    failures.push(message);
    console.error("FAIL " + message);
  } else {
    console.log("ok   " + message);
  }
}

// The page's formatting, from integer minor units (it must agree exactly).
function money(minor, exponent, currency) {
  if (minor === null || minor === undefined) return "—";
  const digits = String(Math.abs(minor)).padStart(exponent + 1, "0");
  const whole = digits.slice(0, digits.length - exponent).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const fraction = exponent > 0 ? "." + digits.slice(digits.length - exponent) : "";
  return (minor < 0 ? "−" : "") + currency + " " + whole + fraction;
}
// One minus sign everywhere: U+2212, as amounts have it.
const percent = (rate) => {
  if (rate === null || rate === undefined) return "—";
  const text = (Number(rate) * 100).toFixed(2);
  return (text === "-0.00" ? "0.00" : text.replace(/^-/, "−")) + " %";
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Calls `probe` every 250 ms until it returns something truthy, which it resolves with;
 * fails with `what` after `timeoutMs`. */
async function eventually(what, probe, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(250);
  }
}

/** Never leaves a child behind, also when this test fails or is interrupted (a demo left
 * running would answer the next run's commands; a localstripe would keep its port): `stop`
 * runs at exit. */
function stopOnExit(stop) {
  process.on("exit", stop);
  for (const name of ["SIGINT", "SIGTERM"]) process.on(name, () => { stop(); process.exit(130); });
}

// ---- localstripe: the payment provider of the dashboard's cancellations ----

// localstripe (PyPI `localstripe`, a stateful fake of Stripe's API that signs and delivers
// webhooks; `just test`'s prerequisites install it) on a free loopback port, as
// crates/ledger-testkit/src/localstripe.rs starts it for the Rust tests, but listening on
// 127.0.0.1 only (its own `start()` listens on every interface) and without its state file
// (/tmp/localstripe.pickle). Its access log goes to target/e2e-localstripe.log.
const PYTHON = process.env.PYTHON || "python3";
const LOCALSTRIPE = `
import sys
from aiohttp import web
from localstripe import resources, server
resources.store.dump_to_disk = lambda: None
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
`;
// The demo's key at localstripe (it takes any sk_test_...) and the secret localstripe signs
// its webhooks to the demo's ingest with: given to the demo as LEDGER_STRIPE_API_KEY and
// LEDGER_STRIPE_WEBHOOK_SECRETS.
const STRIPE_API_KEY = "sk_test_ledger_e2e";
const STRIPE_WEBHOOK_SECRET = "whsec_ledger_e2e_0123456789";

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Starts localstripe and resolves once it answers with its URL and `call(method, path,
 * form)`, which speaks Stripe's API (form-encoded bodies, the secret key as bearer token)
 * and resolves with the answer's JSON (a non-2xx answer is an error). */
async function startLocalstripe() {
  const port = await freePort();
  const log = openSync(join(screenshots, "e2e-localstripe.log"), "w");
  const child = spawn(PYTHON, ["-c", LOCALSTRIPE, String(port)], { stdio: ["ignore", log, log] });
  // Continued first: the test may have paused it (SIGSTOP), and a stopped process leaves
  // SIGTERM pending.
  const stop = () => { child.kill("SIGCONT"); child.kill("SIGTERM"); };
  stopOnExit(stop);
  const url = `http://127.0.0.1:${port}`;
  const call = async (method, path, form) => {
    const response = await fetch(url + path, {
      method, body: form ? new URLSearchParams(form).toString() : undefined,
      headers: { Authorization: "Bearer " + STRIPE_API_KEY, ...(form ? { "Content-Type": "application/x-www-form-urlencoded" } : {}) },
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`localstripe ${method} ${path}: HTTP ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  await eventually("localstripe answers on " + url, async () => {
    if (child.exitCode !== null) {
      throw new Error(`localstripe exited with ${child.exitCode} (target/e2e-localstripe.log says why; ` +
        `install it with \`${PYTHON} -m pip install localstripe\`, as \`just test\`'s prerequisites do)`);
    }
    return call("GET", "/v1/customers").then(() => true, () => false);
  }, 20_000);
  return { stop, url, call, pause: () => child.kill("SIGSTOP"), resume: () => child.kill("SIGCONT") };
}

/** Has localstripe send its webhooks to the demo's ingest, then makes a customer there who
 * pays USD 49.00 a month (card 4242...), and waits until customer, subscription and first
 * payment reach the ledger through those webhooks. Resolves with the ledger's customer id and
 * email, and localstripe's customer, subscription and payment ids. */
async function subscribeAtLocalstripe(stripe, ingest, api) {
  await stripe.call("POST", "/_config/webhooks/ledger", { url: ingest + "/v1/webhooks/stripe", secret: STRIPE_WEBHOOK_SECRET });
  await stripe.call("POST", "/v1/plans", { id: "pro-monthly-e2e", amount: "4900", currency: "usd", interval: "month", "product[name]": "Pro (e2e)" });
  const email = "stripe-e2e@example.com";
  const account = (await stripe.call("POST", "/v1/customers", { email, name: "Stripe E2E" })).id;
  const card = (await stripe.call("POST", "/v1/payment_methods", { type: "card", "card[number]": "4242424242424242",
    "card[exp_month]": "12", "card[exp_year]": "2040", "card[cvc]": "123" })).id;
  await stripe.call("POST", `/v1/payment_methods/${card}/attach`, { customer: account });
  await stripe.call("POST", `/v1/customers/${account}`, { "invoice_settings[default_payment_method]": card });
  const subscription = await stripe.call("POST", "/v1/subscriptions", { customer: account, "items[0][plan]": "pro-monthly-e2e", "items[0][quantity]": "1" });
  check(subscription.status === "active", `localstripe: ${account} subscribes to pro-monthly-e2e (${subscription.id}, ${subscription.status})`);
  const customerId = await eventually(`${account} and ${subscription.id} reach the ledger through localstripe's webhooks`, async () => {
    const found = (await api("/v1/customers?q=" + account)).items[0];
    if (!found) return null;
    const detail = await api("/v1/customers/" + found.customer_id);
    return detail.subscriptions.some((s) => s.subscription_id === subscription.id && s.status === "active") &&
      detail.payments.some((p) => p.status === "succeeded") && found.customer_id;
  });
  const payment = (await api("/v1/customers/" + customerId)).payments.find((p) => p.status === "succeeded");
  check(payment.amount_minor === 4900 && payment.refundable_minor === 4900,
    `${account} reached the ledger through localstripe's signed webhooks as customer ${customerId}, ${subscription.id} active, ${payment.payment_id} paid`);
  return { customerId, email, account, subscriptionId: subscription.id, paymentId: payment.payment_id };
}

// ---- the demo ----

/** Starts the demo, connected to localstripe at `stripeUrl` (`--stripe-api-base`), and
 * resolves once it serves with its dashboard URL and token, the read-only token, ingest's
 * URL, the path of the `ledger` binary and the demo's database URL. */
function startDemo(stripeUrl) {
  const args = ["demo", "--customers", "300", "--months", "12", "--database", "ledger_e2e", "--bind", "127.0.0.1:0",
    "--stripe-api-base", stripeUrl];
  const options = {
    cwd: root, stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, LEDGER_STRIPE_API_KEY: STRIPE_API_KEY, LEDGER_STRIPE_WEBHOOK_SECRETS: STRIPE_WEBHOOK_SECRET },
  };
  const child = process.env.LEDGER_BIN
    ? spawn(process.env.LEDGER_BIN, args, options)
    : spawn("cargo", ["run", "--release", "--quiet", "--bin", "ledger", "--", ...args], options);
  stopOnExit(() => child.kill("SIGINT"));
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => reject(new Error("the demo did not print its dashboard URL within 10 minutes")), 600_000);
    child.stdout.on("data", (chunk) => {
      output += chunk;
      process.stdout.write(chunk);
      const match = output.match(/dashboard: (http:\/\/[^/\s]+)\/#token=(\S+)/);
      if (match && output.includes("serving until Ctrl-C")) {
        clearTimeout(timer);
        const readOnly = output.match(/read-only: http:\/\/\S+\/#token=(\S+)/)[1];
        const ingest = output.match(/ingest: +(http:\/\/\S+)/)[1];
        // The printed `ledger send` line's program: the running ledger binary.
        const ledger = output.split("\n")[output.split("\n").indexOf("send a command:") + 1].trim().split(/\s+/)[0];
        resolve({ child, base: match[1], token: match[2], readOnly, ingest, ledger, database: demoDatabaseUrl(output) });
      }
    });
    child.on("exit", (code) => reject(new Error("the demo exited early with " + code)));
  });
}

/** The demo's database URL, as it prints it; with a password, which it prints as `***`, the
 * one of DATABASE_URL (the same server). */
function demoDatabaseUrl(output) {
  const printed = output.match(/^database: +(\S+)/m)[1];
  if (!printed.includes(":***@")) return printed;
  if (!process.env.DATABASE_URL) throw new Error(`the demo's database ${printed} has a password: give it in DATABASE_URL`);
  const url = new URL(process.env.DATABASE_URL);
  url.pathname = new URL(printed.replace(":***@", ":x@")).pathname;
  return url.href;
}

async function main() {
  const stripe = await startLocalstripe();
  const { child, base, token, readOnly, ingest, ledger, database } = await startDemo(stripe.url);
  const api = async (path) => {
    const response = await fetch(base + path, { headers: { Authorization: "Bearer " + token } });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status + " " + (await response.text()));
    return response.json();
  };
  // Before the page opens, so the figures it shows and the API's include this customer.
  const stripeCustomer = await subscribeAtLocalstripe(stripe, ingest, api);
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    // playwright gives every launch a fresh temporary --user-data-dir.
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const consoleErrors = [];
    // While a refusal is provoked on purpose, Chromium's own log line for its 422 is expected.
    let expectedRefusal = false;
    page.on("console", (message) => {
      if (message.type() !== "error") return;
      if (expectedRefusal && message.text().includes("status of 422")) return;
      consoleErrors.push(message.text());
    });
    page.on("pageerror", (error) => consoleErrors.push(String(error)));
    // Offline: the page may only talk to the service itself and to its ingest (actions).
    const foreign = [];
    await page.route("**/*", (route) => {
      const url = new URL(route.request().url());
      if (url.origin !== new URL(base).origin && url.origin !== new URL(ingest).origin) { foreign.push(url.href); return route.abort(); }
      return route.continue();
    });

    await page.goto(base + "/#token=" + token);
    await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
    check(!(await page.url()).includes(token), "the token is removed from the address bar");
    const icon = await page.$eval("link[rel=icon]", (link) => link.href).catch(() => "");
    check(icon.startsWith("data:image/svg+xml"), "the page has a favicon (inline, works offline)");
    const cohortHelp = await page.$eval("[data-test=cohort-help]", (element) => element.textContent);
    check(/reactivates counts\s+again/.test(cohortHelp), "cohort retention explains that reactivated customers count again");
    const arrHelp = await page.$eval("#overview section p.help", (element) => element.textContent);
    check(arrHelp.includes("rounded once"), "ARR's rounding is explained");

    for (const currency of ["USD", "JPY"]) {
      if (currency !== "USD") {
        await page.evaluate(() => { document.body.dataset.ready = ""; });
        await page.selectOption("#currency", currency);
        await page.waitForFunction((c) => document.querySelector("[data-test=mrr]")?.textContent.startsWith(c), currency);
        await page.waitForTimeout(500);
      } else {
        await page.selectOption("#currency", currency);
        await page.waitForFunction((c) => document.querySelector("[data-test=mrr]")?.textContent.startsWith(c), currency);
      }
      const summary = await api("/v1/metrics/summary?currency=" + currency);
      const exponent = summary.exponent;
      const shown = async (test) => page.$eval(`[data-test=${test}]`, (element) => ({ text: element.textContent, minor: element.dataset.minor }));
      for (const [test, value] of [["mrr", summary.mrr_minor], ["arr", summary.arr_minor], ["arpa", summary.arpa_minor],
        ["net-new", summary.this_month.net_new_minor]]) {
        const figure = await shown(test);
        check(figure.minor === String(value) && figure.text === money(value, exponent, currency),
          `${currency} ${test}: page shows ${figure.text} (${figure.minor}), API says ${money(value, exponent, currency)} (${value})`);
      }
      const customers = await shown("customers");
      check(customers.text === summary.paying_customers.toLocaleString("en-US"), `${currency} paying customers: page ${customers.text}, API ${summary.paying_customers}`);
      const churn = await shown("churn");
      const expectedChurn = summary.last_month ? percent(summary.last_month.customer_churn_rate) : "—";
      check(churn.text === expectedChurn, `${currency} customer churn: page ${churn.text}, API ${expectedChurn}`);
      const series = await api("/v1/metrics/mrr?interval=month&currency=" + currency);
      const last = series.points[series.points.length - 1];
      const row = await page.$eval(`#mrr-table tr[data-period="${last.period_start}"] td[data-minor]`, (cell) => ({ minor: cell.dataset.minor, text: cell.textContent }));
      check(row.minor === String(last.mrr_minor) && row.text === money(last.mrr_minor, exponent, currency),
        `${currency} MRR table ${last.period_start}: page ${row.text}, API ${money(last.mrr_minor, exponent, currency)}`);
      const cohortRows = await page.$$eval("#cohorts tr", (rows) => rows.length - 1);
      const cohorts = await api("/v1/metrics/cohorts?currency=" + currency);
      check(cohortRows === cohorts.cohorts.length, `${currency} cohort grid has ${cohortRows} rows, API ${cohorts.cohorts.length} cohorts`);
      const svgBars = await page.$$eval("#mrr-chart rect", (rects) => rects.length);
      check(svgBars > 0, `${currency} MRR chart draws ${svgBars} movement bars`);
      // The customer list follows the currency: the API's first page for it, in order.
      await page.waitForSelector(`#customers[data-currency="${currency}"]`);
      const listed = await page.$$eval("#customers tr.link", (rows) => rows.map((row) => row.dataset.id));
      const inCurrency = await api("/v1/customers?limit=25&currency=" + currency);
      check(listed.length > 0 && listed.join() === inCurrency.items.map((c) => c.customer_id).join(),
        `${currency} customer list: ${listed.length} customers, the API's page of customers in ${currency}`);
      const asciiMinus = await page.$$eval("td.num, td.cell, .card .value, svg text",
        (elements) => elements.map((element) => element.textContent).filter((text) => /(^|[\s(])-\d/.test(text)));
      check(asciiMinus.length === 0, `${currency}: every negative figure has the U+2212 minus: ${asciiMinus.slice(0, 3).join(" | ")}`);
      if (currency === "USD") await page.screenshot({ path: join(screenshots, "e2e-dashboard.png"), fullPage: true });
    }

    // Layout: at 1400 px every headline amount stays on one line; at 800 px the page itself
    // does not overflow and wide tables scroll inside their box instead of being cut.
    await page.setViewportSize({ width: 1400, height: 900 });
    const wrapped = await page.$$eval("#headline .card .value", (values) => values
      .filter((value) => value.scrollWidth > value.clientWidth ||
        value.getBoundingClientRect().height > 1.6 * parseFloat(getComputedStyle(value).lineHeight))
      .map((value) => value.textContent));
    check(wrapped.length === 0, "headline amounts do not wrap at 1400 px: " + wrapped.join(" | "));
    await page.setViewportSize({ width: 800, height: 900 });
    const layout = await page.evaluate(() => {
      const box = document.querySelector("#mrr-table").parentElement;
      box.scrollLeft = 200;
      return { page: document.documentElement.scrollWidth, overflow: getComputedStyle(box).overflowX,
        wide: box.scrollWidth > box.clientWidth, scrolled: box.scrollLeft > 0 };
    });
    check(layout.page <= 800, `at 800 px the page is ${layout.page} px wide (no horizontal overflow)`);
    check(layout.overflow === "auto" && layout.wide && layout.scrolled, `at 800 px the MRR table scrolls horizontally (${JSON.stringify(layout)})`);
    await page.screenshot({ path: join(screenshots, "e2e-dashboard-800.png"), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.selectOption("#currency", "USD");
    await page.waitForSelector('#customers[data-currency="USD"]');

    // Search a customer of the selected currency by email, open its page, compare with the API.
    // The one with the most MRR changes among the first active ones, for the MRR chart.
    const list = await api("/v1/customers?status=active&limit=25&currency=USD");
    const changes = await Promise.all(list.items.map(async (c) =>
      (await api("/v1/customers/" + c.customer_id + "/mrr")).currencies.reduce((sum, series) => sum + series.points.length, 0)));
    const customer = list.items[changes.indexOf(Math.max(...changes))];
    await page.fill("#search", customer.email);
    await page.press("#search", "Enter");
    await page.waitForFunction(() => document.querySelectorAll("#customers tr.link").length === 1);
    check((await page.$eval("#customers tr.link", (row) => row.dataset.id)) === customer.customer_id, "search by email finds exactly that customer");
    await page.click("#customers tr.link");
    await page.waitForSelector("[data-test=customer-email]");
    await page.waitForSelector("#customer-timeline table");
    const detail = await api("/v1/customers/" + customer.customer_id);
    const email = await page.$eval("[data-test=customer-email]", (element) => element.textContent);
    check(email.startsWith(detail.email), `customer page shows ${detail.email}`);
    const mrr = await page.$eval("[data-test=customer-mrr]", (element) => element.textContent);
    const expectedMrr = money(detail.mrr_minor, detail.mrr_currency_exponent, detail.mrr_currency);
    check(mrr === expectedMrr, `customer MRR: page ${mrr}, API ${expectedMrr}`);
    const timeline = await api("/v1/customers/" + customer.customer_id + "/timeline?limit=200");
    const events = await page.$$eval("#customer-timeline tr", (rows) => rows.length - 1);
    check(events === timeline.items.length, `timeline shows ${events} events, API ${timeline.items.length}`);
    const subscriptions = await page.$$eval("#customer-subscriptions tr", (rows) => rows.length - 1);
    check(subscriptions === detail.subscriptions.length, `subscriptions: page ${subscriptions}, API ${detail.subscriptions.length}`);
    // The customer's MRR over time: one point per change, as the API lists them.
    const mrrHistory = await api("/v1/customers/" + customer.customer_id + "/mrr");
    const apiPoints = mrrHistory.currencies.flatMap((series) => series.points);
    await page.waitForFunction(() => !document.querySelector("#customer-mrr-chart").textContent.startsWith("Loading"));
    const chartPoints = await page.$$eval("[data-test=customer-mrr-point]", (points) => points.map((point) => point.dataset.minor));
    check(apiPoints.length > 0 && chartPoints.join() === apiPoints.map((p) => String(p.mrr_minor)).join(),
      `customer MRR chart: ${chartPoints.length} points, API ${apiPoints.length} (${chartPoints.slice(-3).join()})`);
    const deepLink = await page.$eval("[data-test=deep-link]", (link) => link.href);
    check(deepLink === `${base}/#token=${encodeURIComponent(token)}&customer=${customer.customer_id}`, `the customer page offers its deep link ${deepLink}`);
    await page.screenshot({ path: join(screenshots, "e2e-customer.png"), fullPage: true });

    // Operator actions (the token has commands:write at the demo's ingest): the profile here;
    // cancellations, carried out at localstripe, further down.
    check(await page.isVisible("[data-test=actions]"), "a write token sees the actions");
    // A profile edit completes at once; a refused one is explained in words.
    await page.fill("[data-test=profile-name]", "Renamed by the e2e test");
    await page.click("[data-test=profile-save]");
    await page.waitForFunction(() => document.querySelector("[data-test=action]").dataset.state === "complete" && document.querySelector("[data-test=action]").textContent.includes("Update profile"));
    await page.waitForFunction(() => document.querySelector("#customer-detail").textContent.includes("Renamed by the e2e test"));
    check(true, "a profile edit completes and the page shows the new name");
    const other = list.items.find((c) => c.customer_id !== customer.customer_id);
    await page.fill("[data-test=profile-email]", other.email);
    expectedRefusal = true;
    await page.click("[data-test=profile-save]");
    await page.waitForSelector("[data-test=action][data-state=refused]");
    expectedRefusal = false;
    const refused = await page.$eval("[data-test=action][data-state=refused]", (entry) => entry.textContent);
    check(refused.includes("The ledger refused it") && refused.includes("unique_key_taken"), `a refused action is explained: "${refused}"`);
    await page.screenshot({ path: join(screenshots, "e2e-actions.png"), fullPage: true });
    await refundAtLocalstripe(page, api, stripe, stripeCustomer);
    await cancelAtLocalstripe(page, api, stripe, stripeCustomer, { ledger, database });
    const unknownToStripe = await cancelUnknownToLocalstripe(page, api, stripe, stripeCustomer);
    const heldAtStripe = await pauseByHolder(page, api, stripe, { ingest, token });
    checkProviderSyncCalls({ ledger, database }, ["POST /v1/subscriptions/" + heldAtStripe,
      "DELETE /v1/subscriptions/" + unknownToStripe, "DELETE /v1/subscriptions/" + stripeCustomer.subscriptionId, "POST /v1/refunds"]);

    // A read-only token sees no actions (ingest would refuse it anyway: ledger-ingest's tests).
    const readOnlyContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const reader = await readOnlyContext.newPage();
    reader.on("pageerror", (error) => consoleErrors.push(String(error)));
    await reader.goto(`${base}/#token=${encodeURIComponent(readOnly)}&customer=${customer.customer_id}`);
    await reader.waitForSelector("[data-test=customer-email]");
    await reader.waitForSelector("#customer-subscriptions table");
    await reader.waitForSelector("#customer-payments table");
    const buttons = await reader.$$eval("button[data-action], button[data-refund], [data-test=profile-save]", (elements) => elements.filter((element) => element.offsetParent !== null).length);
    const payments = await reader.$$eval("#customer-payments tr[data-payment]", (rows) => rows.length);
    check(!(await reader.isVisible("[data-test=actions]")) && buttons === 0 && payments > 0,
      `a read-only token sees no action buttons (${buttons} visible), also none to refund its ${payments} payments`);
    await reader.screenshot({ path: join(screenshots, "e2e-read-only.png"), fullPage: true });
    await readOnlyContext.close();

    // The deep link opens that customer in a fresh tab (no token stored yet).
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const linked = await context.newPage();
    linked.on("pageerror", (error) => consoleErrors.push(String(error)));
    await linked.goto(`${base}/#token=${encodeURIComponent(token)}&customer=${customer.customer_id}`);
    await linked.waitForSelector("[data-test=customer-email]");
    const linkedEmail = await linked.$eval("[data-test=customer-email]", (element) => element.textContent);
    check(linkedEmail.startsWith(detail.email), `the deep link opens ${detail.email}`);
    const linkedUrl = linked.url();
    check(!linkedUrl.includes(token) && linkedUrl.endsWith("#customer=" + customer.customer_id),
      `the deep link's token leaves the address bar, the customer stays: ${linkedUrl}`);
    await context.close();

    // An empty state is explained, not blank.
    await page.evaluate(() => { location.hash = ""; });
    await page.fill("#search", "nobody-at-all@nowhere.invalid");
    await page.press("#search", "Enter");
    await page.waitForSelector("#customers .empty");
    const emptyText = await page.$eval("#customers .empty", (element) => element.textContent);
    check(emptyText.startsWith("No customers in USD match") && emptyText.includes("nobody-at-all@nowhere.invalid"), `empty search explains itself: "${emptyText}"`);

    check(foreign.length === 0, "no request leaves the service and its ingest (works offline): " + foreign.join(", "));
    check(consoleErrors.length === 0, "no errors in the browser console: " + consoleErrors.join(" | "));
  } finally {
    await browser.close();
    child.kill("SIGINT");
    stripe.stop();
  }
  if (failures.length > 0) {
    console.error(`\n${failures.length} check(s) failed`);
    process.exit(1);
  }
  console.log(`\nall checks passed; screenshots: target/e2e-dashboard.png, target/e2e-dashboard-800.png, target/e2e-customer.png, target/e2e-actions.png, target/e2e-refund-processing.png, target/e2e-refund-complete.png, target/e2e-action-processing.png, target/e2e-action-complete.png, target/e2e-action-processing-refused.png, target/e2e-action-failed.png, target/e2e-pause-processing.png, target/e2e-pause.png, target/e2e-read-only.png`);
}

// ---- refunds and cancellations from the page, carried out at localstripe by the demo's provider-sync ----

/** Shows customer `customerId` (whose email is `email`) on `page`, through the page's own
 * route (`#customer=<id>`), and waits for its subscriptions. */
async function openCustomer(page, customerId, email) {
  await page.evaluate((id) => { location.hash = "customer=" + id; }, customerId);
  await page.waitForFunction((expected) => document.querySelector("[data-test=customer-email]")?.textContent.startsWith(expected), email);
  await page.waitForSelector("#customer-subscriptions table");
}

/** Clicks `button` (accepting the confirmation), sees the page show the request (`what`)
 * `processing` (saved as `screenshot`) and resolves with the action log entry's final state
 * and text. localstripe is paused (SIGSTOP) from the click until the page shows
 * `processing`: it answers provider-sync within milliseconds otherwise, before the page's
 * first read, which then shows the answer at once. Paused, it holds provider-sync's request
 * (well within its 10 s timeout), as a slow provider would. A pause or resume asks for no
 * confirmation (`confirms` false). */
async function clickAndFollow(page, stripe, button, what, screenshot, { confirms = true } = {}) {
  stripe.pause();
  try {
    if (confirms) page.once("dialog", (dialog) => dialog.accept());
    await page.click(button);
    await page.waitForFunction(() => document.querySelector("[data-test=action]").dataset.state === "processing", null, { timeout: 30_000 });
    const processing = await page.$eval("[data-test=action]", (element) => element.textContent);
    check(processing.includes("waiting for the provider's answer"), `${what} shows as processing: "${processing}"`);
    await page.screenshot({ path: join(screenshots, screenshot), fullPage: true });
  } finally {
    stripe.resume();
  }
  await page.waitForFunction(() => ["complete", "failed", "refused"].includes(document.querySelector("[data-test=action]").dataset.state), null, { timeout: 60_000 });
  return page.$eval("[data-test=action]", (element) => ({ state: element.dataset.state, text: element.textContent }));
}

/** The operator refunds part of the localstripe customer's payment from its page. Amounts the
 * form cannot take (more than is left, more decimals than USD has) are refused with a
 * message and send nothing; USD 10.00 is `processing`, then `complete`: localstripe has one
 * refund of 1000 cents of the charge, and the page and the API show 10.00 refunded. */
async function refundAtLocalstripe(page, api, stripe, stripeCustomer) {
  const { customerId, email, paymentId } = stripeCustomer;
  await openCustomer(page, customerId, email);
  const input = `input[data-test=refund-amount][data-payment="${paymentId}"]`;
  const button = `button[data-refund="${paymentId}"]`;
  for (const [typed, expected] of [["49.01", "USD 49.01 is more than is left to refund"], ["1.005", "USD has 2 decimals"],
    ["0", "A refund of zero returns nothing"], ["-5", "A refund cannot be negative"]]) {
    await page.fill(input, typed);
    await page.click(button);
    const refused = await page.$eval("[data-test=action]", (element) => ({ state: element.dataset.state, text: element.textContent }));
    check(refused.state === "refused" && refused.text.includes(expected), `a refund of ${typed} is refused in the form: "${refused.text}"`);
  }
  const requests = (await api("/v1/customers/" + customerId + "/timeline?limit=1000")).items.filter((e) => e.event_type === "refund_requested");
  check(requests.length === 0, `the refused amounts sent nothing (${requests.length} refund requests)`);
  await page.fill(input, "10.00");
  const answer = await clickAndFollow(page, stripe, button, `the refund of USD 10.00 of ${paymentId}`, "e2e-refund-processing.png");
  check(answer.state === "complete" && answer.text.includes("payment refunded"), `then it completes: "${answer.text}"`);
  await page.waitForFunction((id) => document.querySelector(`#customer-payments tr[data-payment="${id}"] [data-test=payment-refunded]`)?.textContent === "USD 10.00", paymentId, { timeout: 30_000 });
  await page.screenshot({ path: join(screenshots, "e2e-refund-complete.png"), fullPage: true });
  const atStripe = (await stripe.call("GET", (paymentId.startsWith("pi_") ? "/v1/refunds?payment_intent=" : "/v1/refunds?charge=") + paymentId)).data;
  check(atStripe.length === 1 && atStripe[0].amount === 1000, `localstripe has one refund of 1000 cents of ${paymentId}: ${JSON.stringify(atStripe.map((r) => [r.id, r.amount]))}`);
  const payment = (await api("/v1/customers/" + customerId)).payments.find((p) => p.payment_id === paymentId);
  check(payment.refunded_minor === 1000 && payment.refund_requested_minor === 0 && payment.refundable_minor === 3900,
    `the API shows ${paymentId} with 1000 refunded, 3900 refundable: ${JSON.stringify(payment)}`);
}

/** The customer's events of `eventType` about `subscriptionId`, from the API. */
async function eventsOf(api, customerId, eventType, subscriptionId) {
  return (await api("/v1/customers/" + customerId + "/timeline?limit=1000")).items
    .filter((event) => event.event_type === eventType && event.subscription_id === subscriptionId);
}

/** The operator cancels the localstripe customer's subscription now: the page shows
 * `processing`, then `complete` once provider-sync's confirmation is recorded; localstripe
 * has the subscription canceled, and the ledger one `subscription_cancelled`, also after
 * localstripe's own `customer.subscription.deleted` webhook reached it. */
async function cancelAtLocalstripe(page, api, stripe, stripeCustomer, { ledger, database }) {
  const { customerId, email, subscriptionId } = stripeCustomer;
  await openCustomer(page, customerId, email);
  const answer = await clickAndFollow(page, stripe, `button[data-action=cancel-now][data-subscription="${subscriptionId}"]`,
    `the cancellation of ${subscriptionId}`, "e2e-action-processing.png");
  check(answer.state === "complete" && answer.text.includes("subscription cancelled"), `then it completes: "${answer.text}"`);
  await page.waitForFunction((id) => [...document.querySelectorAll("#customer-subscriptions tr")].some((row) => row.textContent.includes(id) && row.textContent.includes("canceled")), subscriptionId, { timeout: 30_000 });
  await page.screenshot({ path: join(screenshots, "e2e-action-complete.png"), fullPage: true });
  const atStripe = await stripe.call("GET", "/v1/subscriptions/" + subscriptionId);
  check(atStripe.status === "canceled", `localstripe has ${subscriptionId} ${atStripe.status}`);
  // localstripe announces the deletion too (a second after it): once the ledger has recorded
  // that delivery, it must still hold one cancellation.
  const announced = await eventually(`localstripe announces the deletion of ${subscriptionId}`, async () =>
    (await stripe.call("GET", "/v1/events?limit=100")).data.find((event) => event.type === "customer.subscription.deleted" && event.data.object.id === subscriptionId));
  const delivery = await eventually(`the ledger records localstripe's ${announced.id}`, () =>
    execFileSync(ledger, ["connectors", "messages", "--provider", "stripe", "--limit", "1000"], { env: { ...process.env, DATABASE_URL: database }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
      .split("\n").map((line) => line.split("\t")).find((fields) => fields[2] === announced.id));
  const cancelled = await eventsOf(api, customerId, "subscription_cancelled", subscriptionId);
  check(cancelled.length === 1 && cancelled[0].issuer === "payment_provider",
    `the ledger has exactly one subscription_cancelled for ${subscriptionId} (${cancelled.map((event) => event.issuer + " at " + event.global_position).join(", ")}); ` +
    `localstripe's own webhook ${announced.id} was recorded ${delivery[4]}`);
  const after = await api("/v1/customers/" + customerId);
  check(after.subscriptions.find((s) => s.subscription_id === subscriptionId).status === "canceled", "the API shows the subscription canceled");
}

/** The operator cancels now a subscription of one of the demo's own Stripe customers, which
 * exists only in the ledger: localstripe answers 404, and the page shows `failed` with its
 * reason; the subscription stays active. */
async function cancelUnknownToLocalstripe(page, api, stripe, stripeCustomer) {
  const candidates = (await api("/v1/customers?provider=stripe&status=active&limit=50")).items
    .filter((c) => c.customer_id !== stripeCustomer.customerId);
  let customer, subscription;
  for (const candidate of candidates) {
    customer = await api("/v1/customers/" + candidate.customer_id);
    subscription = customer.subscriptions.find((s) => s.status === "active" && !s.cancel_at_period_end);
    if (subscription) break;
  }
  if (!subscription) throw new Error("no demo Stripe customer with an active subscription among " + candidates.length);
  await openCustomer(page, customer.customer_id, customer.email);
  const answer = await clickAndFollow(page, stripe, `button[data-action=cancel-now][data-subscription="${subscription.subscription_id}"]`,
    `the cancellation of ${subscription.subscription_id}`, "e2e-action-processing-refused.png");
  // localstripe's answer: 404 {"error": {"type": "invalid_request_error", "message": "Not Found"}}.
  check(answer.state === "failed" && answer.text.includes("the provider refused: Not Found (invalid_request_error)"),
    `localstripe refuses it (${customer.account_id} is the demo's own), so it fails with localstripe's reason: "${answer.text}"`);
  await page.screenshot({ path: join(screenshots, "e2e-action-failed.png"), fullPage: true });
  const failed = await eventsOf(api, customer.customer_id, "cancellation_failed", subscription.subscription_id);
  check(failed.length === 1 && failed[0].failure_code === "invalid_request_error" && failed[0].failure_message === "Not Found" && failed[0].issuer === "payment_provider",
    `the ledger has one cancellation_failed for it: ${JSON.stringify(failed.map((event) => [event.issuer, event.failure_code, event.failure_message]))}`);
  const after = await api("/v1/customers/" + customer.customer_id);
  const status = after.subscriptions.find((s) => s.subscription_id === subscription.subscription_id).status;
  check(status === "active", `the refused cancellation leaves ${subscription.subscription_id} ${status}`);
  return subscription.subscription_id;
}

/** Decision 0032: the page asks a provider for a pause only of a subscription held there,
 * whatever the customer registered through. A customer registered internally (through the
 * demo's ingest, as an internal system would) has `sub_e2e_stripe` held at Stripe and
 * `sub_e2e_own` of the company's own billing. Pausing the first sends
 * `request_subscription_update`, `processing` until provider-sync's call to localstripe
 * (which knows no such subscription: 404) makes it `failed` with localstripe's reason;
 * pausing the second records `subscription_paused` at once (`complete`), asking nobody.
 * Resolves with the Stripe-held subscription's id. */
async function pauseByHolder(page, api, stripe, { ingest, token }) {
  const send = async (name, customerId, provider, accountId, body) => {
    const response = await fetch(ingest + "/v1/commands/" + name, {
      method: "POST", headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify({ metadata: { idempotency_key: `e2e:${name}:${body.subscription_id || body.email}`, customer_id: customerId,
        occurred_at_unix_micros: String(Date.now() * 1000), payment_provider: provider, account_id: accountId }, [name]: body }),
    });
    const reply = await response.json();
    if (!response.ok || !reply.accepted) throw new Error(`ingest refused ${name}: HTTP ${response.status} ${JSON.stringify(reply)}`);
    return reply.accepted;
  };
  const email = "internal-e2e@example.com";
  const customerId = (await send("register_customer", "", "PAYMENT_PROVIDER_INTERNAL", "", { email, name: "Internal E2E" })).customer_id;
  const plan = { plan_id: "pro-monthly-e2e", unit_price: { amount_minor: "4900", currency: "USD" }, interval: "BILLING_INTERVAL_MONTH", interval_count: 1 };
  const started = (subscriptionId) => ({ subscription_id: subscriptionId, plan, quantity: 1,
    current_period_end_unix_seconds: String(Math.floor(Date.now() / 1000) + 30 * 86_400) });
  const [held, own] = ["sub_e2e_stripe", "sub_e2e_own"];
  await send("start_subscription", customerId, "PAYMENT_PROVIDER_STRIPE", "cus_e2e_internal", started(held));
  await send("start_subscription", customerId, "PAYMENT_PROVIDER_INTERNAL", "", started(own));
  const detail = await eventually(`${customerId}'s two subscriptions reach the read model`, async () => {
    const answer = await api("/v1/customers/" + customerId);
    return answer.subscriptions.length === 2 && answer;
  });
  const holders = Object.fromEntries(detail.subscriptions.map((s) => [s.subscription_id, s.provider]));
  check(detail.provider === "internal" && holders[held] === "stripe" && holders[own] === "internal",
    `the API names each subscription's holder, not the registration provider (${detail.provider}): ${JSON.stringify(holders)}`);
  await openCustomer(page, customerId, email);
  const shown = await page.$$eval("#customer-subscriptions tr", (rows) => rows.slice(1).map((row) =>
    [row.cells[0].textContent, row.querySelector("[data-test=subscription-provider]").textContent]));
  check(JSON.stringify(Object.fromEntries(shown)) === JSON.stringify(holders), `the page shows each subscription's provider: ${JSON.stringify(shown)}`);

  const answer = await clickAndFollow(page, stripe, `button[data-action=pause][data-subscription="${held}"]`,
    `the pause of ${held}, held at Stripe by a customer registered internally,`, "e2e-pause-processing.png", { confirms: false });
  check(answer.state === "failed" && answer.text.includes("the provider refused: Not Found (invalid_request_error)"),
    `it was asked of Stripe, which does not know it: "${answer.text}"`);
  const requested = await eventsOf(api, customerId, "subscription_update_requested", held);
  const paused = await eventsOf(api, customerId, "subscription_paused", held);
  check(requested.length === 1 && paused.length === 0,
    `the ledger holds one subscription_update_requested for ${held} and no subscription_paused (${paused.length})`);

  await page.click(`button[data-action=pause][data-subscription="${own}"]`);
  await page.waitForFunction(() => ["complete", "failed", "refused"].includes(document.querySelector("[data-test=action]").dataset.state), null, { timeout: 30_000 });
  const recorded = await page.$eval("[data-test=action]", (element) => ({ state: element.dataset.state, text: element.textContent }));
  check(recorded.state === "complete" && recorded.text.includes("Pause " + own) && recorded.text.includes("subscription paused"),
    `the pause of ${own}, of the company's own billing, is recorded at once: "${recorded.text}"`);
  const after = await api("/v1/customers/" + customerId);
  const statuses = Object.fromEntries(after.subscriptions.map((s) => [s.subscription_id, s.status]));
  check(statuses[own] === "paused" && statuses[held] === "active" && (await eventsOf(api, customerId, "subscription_update_requested", own)).length === 0,
    `${own} is paused without a request, ${held} stays active: ${JSON.stringify(statuses)}`);
  await page.screenshot({ path: join(screenshots, "e2e-pause.png"), fullPage: true });
  return held;
}

/** provider-sync's requests, newest first, were `expected`: the page's refund, cancellations
 * and pause, and none for the demo's history: its requests are the providers' own news
 * (issuer payment_provider), although several of its subscriptions are left cancel-pending. */
function checkProviderSyncCalls({ ledger, database }, expected) {
  const requests = execFileSync(ledger, ["provider-sync", "attempts"], { env: { ...process.env, DATABASE_URL: database }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
    .split("\n").filter((line) => line).map((line) => line.split("\t")[2]);
  check(requests.join() === expected.join(), `provider-sync's requests were the page's refund, cancellations and pause only: ${requests.join(", ")}`);
}

mkdirSync(screenshots, { recursive: true });
main().catch((error) => { console.error(error); process.exit(1); });
