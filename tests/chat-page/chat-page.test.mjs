// The silo's chat page as a user meets it: a silo serving the demo model, the page at "/" in headless Chromium.
// Needs the silo built (dotnet build src/Silo -c Release, or the solution's test run) and Debian's chromium package;
// CHROMIUM and WEFT_SILO_DLL override where they are.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const siloDll = process.env.WEFT_SILO_DLL ?? path.join(root, "src/Silo/bin/Release/net10.0/Weft.Silo.dll");

const freePort = () => new Promise(resolve => {
  const server = createServer().listen(0, "127.0.0.1", () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  });
});

let silo, browser, context, url, log = "";

before(async () => {
  const [http, siloPort] = [await freePort(), await freePort()];
  url = `http://127.0.0.1:${http}/`;
  silo = spawn("dotnet", [siloDll, "--urls", url.slice(0, -1), "--silo-port", String(siloPort), "--gateway-port", "0",
    "--engine", "cpu"], { stdio: ["ignore", "pipe", "pipe"] });
  silo.stdout.on("data", d => { log += d; });
  silo.stderr.on("data", d => { log += d; });
  // the demo model is generated on first use, then loaded: /health says when it is ready
  for (let i = 0; ; i++) {
    const ok = await fetch(url + "health").then(r => r.ok, () => false);
    if (ok) break;
    if (i > 600 || silo.exitCode !== null) throw new Error(`the silo did not become ready:\n${log}`);
    await new Promise(r => setTimeout(r, 100));
  }
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox"] });
  // one context for both tests: its localStorage holds the conversations, as one user's browser does
  context = await browser.newContext();
});

after(async () => {
  await browser?.close();
  silo?.kill("SIGTERM");
});

async function send(page, text) {
  await page.fill("#prompt", text);
  await page.press("#prompt", "Enter");
}

test("A reply streams with its token counts and speed, and the conversation is listed", async () => {
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForFunction(() => document.querySelector("#model").options.length > 0);
  await page.click("details summary");
  await page.fill("#temperature", "0");
  await page.fill("#max_tokens", "16");
  await page.dispatchEvent("#max_tokens", "change");
  await send(page, "Hello!");
  const stats = page.locator(".stats").first();
  await stats.waitFor();
  assert.match(await stats.textContent(),
    /^\d+ prompt tokens \(0 cached\), \d+ tokens, first after \d+ ms, [\d.]+ tokens\/s$/);
  assert.notEqual((await page.locator(".message.assistant").first().textContent()).length, 0);
  assert.deepEqual(await page.locator("#conversations li").allTextContents(), ["Hello!"]);
  await page.close();
});

test("Stop ends a reply, and after a reload the conversation resumes from the server's cache", async () => {
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForFunction(() => document.querySelector("#model").options.length > 0);
  await page.click("details summary");
  // the demo model's context is 2048 tokens: prompt and reply must fit
  await page.fill("#max_tokens", "1000");
  await page.dispatchEvent("#max_tokens", "change");
  // the demo model's random weights may end a reply at once: this one must still be running when Stop is pressed
  await page.route("**/v1/chat/completions", route =>
    route.continue({ postData: JSON.stringify({ ...JSON.parse(route.request().postData()), ignore_eos: true }) }));
  await send(page, "Tell me a long story");
  await page.waitForFunction(() => document.querySelectorAll(".message.assistant")[1]?.textContent.length > 0);
  await page.click("#stop");
  await page.locator(".stats", { hasText: "stopped after" }).waitFor();
  assert.equal(await page.isDisabled("#stop"), true);
  await page.unroute("**/v1/chat/completions");

  await page.reload();
  await page.waitForFunction(() => document.querySelector("#model").options.length > 0);
  await page.click("#conversations li >> nth=0");
  assert.deepEqual(await page.locator(".message.user").allTextContents(), ["Hello!", "Tell me a long story"]);
  await page.click("details summary");
  await page.fill("#max_tokens", "8");
  await page.dispatchEvent("#max_tokens", "change");
  await send(page, "And then?");
  // a resumed conversation shows its messages, not the statistics of earlier replies
  const stats = page.locator(".stats").first();
  await stats.waitFor();
  const cached = Number((await stats.textContent()).match(/\((\d+) cached\)/)[1]);
  assert.ok(cached > 0, `the third turn reuses the conversation's KV cache: ${await stats.textContent()}`);
  await page.close();
});
