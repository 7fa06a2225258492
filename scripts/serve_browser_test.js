#!/usr/bin/env node
// Browser test for `gpt2 serve`'s web page, in headless Chromium (Debian's `chromium` package)
// driven by playwright-core: opens the page, types a prompt, clicks Generate, checks that the
// text streams in (it grows over several reads before the request is done), that the metrics panel
// counts the request, and that the training view shows its curves when the server has --log.
// Saves a screenshot. Run by hand, not in CI:
//
//   mkdir -p /tmp/pw && (cd /tmp/pw && npm install playwright-core)
//   gpt2 serve --init MODEL --log LOG.jsonl --port 8080 &
//   NODE_PATH=/tmp/pw/node_modules node scripts/serve_browser_test.js http://127.0.0.1:8080 docs/serve.png

const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");

async function main() {
  const url = process.argv[2] || "http://127.0.0.1:8080";
  const shot = process.argv[3] || "docs/serve.png";
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "gpt2-chromium-"));
  // a fresh profile directory (playwright passes it as --user-data-dir)
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 1100 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  let failed = false;
  const check = (ok, what) => { console.log(`${ok ? "ok  " : "FAIL"} ${what}`); if (!ok) failed = true; };
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url, { waitUntil: "load" });
    await page.waitForFunction(() => !document.getElementById("model").textContent.includes("…"));
    check((await page.textContent("#model")).includes("model"), `the header names the model: ${await page.textContent("#model")}`);

    await page.fill("#prompt", "ROMEO: O, she doth teach the torches to burn bright!");
    await page.fill("#max_tokens", "120");
    await page.fill("#seed", "3");
    await page.click("#go");
    // sample the generated text while it streams: it must grow in steps before the request ends
    const lengths = [];
    for (let i = 0; i < 400; i++) {
      const len = await page.evaluate(() => (document.getElementById("generated") || { textContent: "" }).textContent.length);
      if (lengths.length === 0 || len !== lengths[lengths.length - 1]) lengths.push(len);
      if (await page.evaluate(() => document.getElementById("status").textContent.startsWith("done"))) break;
      await page.waitForTimeout(25);
    }
    const status = await page.textContent("#status");
    check(status.startsWith("done"), `the request finished: ${status}`);
    const distinct = lengths.filter((l) => l > 0);
    check(distinct.length >= 3, `text streamed in: ${distinct.length} different lengths seen (${distinct.slice(0, 8).join(", ")}, ...)`);

    // the metrics panel refreshes every 2 s
    await page.waitForTimeout(2500);
    const served = await page.evaluate(() => {
      const rows = [...document.querySelectorAll("#metrics-table tr")];
      const row = rows.find((r) => r.cells[0].textContent === "completions served");
      return row ? Number(row.cells[1].textContent) : -1;
    });
    check(served >= 1, `the metrics panel counts the completion (${served})`);

    const training = await page.evaluate(() => !document.getElementById("training").hidden);
    if (training) {
      await page.waitForFunction(() => document.getElementById("curves").naturalWidth > 0, null, { timeout: 15000 });
      check(true, `the training view shows the curves: ${await page.textContent("#training-last")}`);
    } else {
      console.log("(no training view: the server has no --log)");
    }
    check(errors.length === 0, `no JavaScript errors${errors.length ? ": " + errors.join("; ") : ""}`);
    fs.mkdirSync(path.dirname(shot), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(1); });
