// Browser test of the dashboard: starts `ledger demo` (a small deterministic history, its own
// database `ledger_e2e`), drives headless Chromium (Debian's `chromium`, through playwright-core)
// against the page, checks that the figures shown equal the API's, and saves screenshots to
// target/. Run it with `just e2e` (see e2e/README.md).
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
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

/** Starts the demo and resolves once it serves with its dashboard URL and token, the
 * read-only token, ingest's URL and the `ledger send` line's program and NATS flags. */
function startDemo() {
  const args = ["demo", "--customers", "300", "--months", "12", "--database", "ledger_e2e", "--bind", "127.0.0.1:0"];
  const child = process.env.LEDGER_BIN
    ? spawn(process.env.LEDGER_BIN, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"] })
    : spawn("cargo", ["run", "--release", "--quiet", "--bin", "ledger", "--", ...args], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
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
        // The printed `ledger send` line: the program and its NATS flags, up to `send`.
        const sendLine = output.split("\n")[output.split("\n").indexOf("send a command:") + 1].trim().split(/\s+/);
        const send = sendLine.slice(0, sendLine.indexOf("send"));
        resolve({ child, base: match[1], token: match[2], readOnly, ingest, send });
      }
    });
    child.on("exit", (code) => reject(new Error("the demo exited early with " + code)));
    // Never leave the demo behind (it would answer the next run's commands).
    process.on("exit", () => child.kill("SIGINT"));
    for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => { child.kill("SIGINT"); process.exit(130); });
  });
}

async function main() {
  const { child, base, token, readOnly, ingest, send } = await startDemo();
  const api = async (path) => {
    const response = await fetch(base + path, { headers: { Authorization: "Bearer " + token } });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status + " " + (await response.text()));
    return response.json();
  };
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

    // Operator actions (the token has commands:write at the demo's ingest): cancel a
    // subscription now. It shows `processing` at once; this test then answers as the payment
    // provider would (`confirm_cancellation`, issuer payment_provider, through NATS with
    // `ledger send`) and the page shows `complete`.
    check(await page.isVisible("[data-test=actions]"), "a write token sees the actions");
    const active = detail.subscriptions.find((s) => s.status === "active" && !s.cancel_at_period_end);
    page.once("dialog", (dialog) => dialog.accept());
    await page.click(`button[data-action=cancel-now][data-subscription="${active.subscription_id}"]`);
    await page.waitForSelector("[data-test=action][data-state=processing]", { timeout: 30_000 });
    const processing = await page.$eval("[data-test=action]", (entry) => entry.textContent);
    check(processing.includes("processing") && processing.includes("waiting for the provider's answer"), `the cancellation shows as processing: "${processing}"`);
    await page.waitForFunction((id) => [...document.querySelectorAll("#customer-timeline tr")].some((row) => row.textContent.includes("cancellation requested") && row.textContent.includes(id)), active.subscription_id);
    await page.screenshot({ path: join(screenshots, "e2e-action-processing.png"), fullPage: true });
    execFileSync(send[0], [...send.slice(1), "send", "confirm_cancellation", "--customer-id", customer.customer_id,
      "--provider", detail.provider, "--account-id", detail.account_id, "--issuer", "payment_provider",
      "--json", JSON.stringify({ subscription_id: active.subscription_id, reason: "cancelled at the provider" })], { stdio: "inherit" });
    await page.waitForSelector("[data-test=action][data-state=complete]", { timeout: 30_000 });
    const complete = await page.$eval("[data-test=action]", (entry) => entry.textContent);
    check(complete.includes("complete") && complete.includes("subscription cancelled"), `the cancellation completes: "${complete}"`);
    await page.waitForFunction((id) => [...document.querySelectorAll("#customer-subscriptions tr")].some((row) => row.textContent.includes(id) && row.textContent.includes("canceled")), active.subscription_id, { timeout: 30_000 });
    const after = await api("/v1/customers/" + customer.customer_id);
    check(after.subscriptions.find((s) => s.subscription_id === active.subscription_id).status === "canceled", "the API shows the subscription canceled");
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

    // A read-only token sees no actions (ingest would refuse it anyway: ledger-ingest's tests).
    const readOnlyContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const reader = await readOnlyContext.newPage();
    reader.on("pageerror", (error) => consoleErrors.push(String(error)));
    await reader.goto(`${base}/#token=${encodeURIComponent(readOnly)}&customer=${customer.customer_id}`);
    await reader.waitForSelector("[data-test=customer-email]");
    await reader.waitForSelector("#customer-subscriptions table");
    const buttons = await reader.$$eval("button[data-action], [data-test=profile-save]", (elements) => elements.filter((element) => element.offsetParent !== null).length);
    check(!(await reader.isVisible("[data-test=actions]")) && buttons === 0, `a read-only token sees no action buttons (${buttons} visible)`);
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
  }
  if (failures.length > 0) {
    console.error(`\n${failures.length} check(s) failed`);
    process.exit(1);
  }
  console.log(`\nall checks passed; screenshots: target/e2e-dashboard.png, target/e2e-dashboard-800.png, target/e2e-customer.png, target/e2e-action-processing.png, target/e2e-actions.png, target/e2e-read-only.png`);
}

mkdirSync(screenshots, { recursive: true });
main().catch((error) => { console.error(error); process.exit(1); });
