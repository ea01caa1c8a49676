// The careloop web chat in a real browser (Debian's chromium through playwright-core):
//   node tests/browser/webchat.mjs http://127.0.0.1:8080
// Opens /chat on a 375 px phone screen, completes onboarding, asks a question and sees the
// answer stream in, switches to Arabic, reloads without losing or repeating a message, and
// checks the embeddable launcher on another origin. Exits non-zero with the reason on failure.
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CARELOOP_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];
// A model answer takes about 30 s on a small CPU, twice that with a stricter retry.
const ANSWER_MS = 300_000;
const TEMPLATE_MS = 60_000;

const base = (process.argv[2] || '').replace(/\/+$/, '');
const started = Date.now();
let browser;

function fail(message) {
  console.error(`webchat browser test FAILED after ${secs()} s: ${message}`);
  process.exitCode = 1;
  throw new Error(message);
}
function check(condition, message) { if (!condition) fail(message); }
function secs() { return ((Date.now() - started) / 1000).toFixed(1); }
function step(message) { console.log(`[${secs()} s] ${message}`); }

// Everything the chat shows, in order, read from the widget's shadow root.
async function transcript(page) {
  return page.evaluate(() => {
    const root = document.querySelector('[data-careloop-webchat]')?.shadowRoot;
    if (!root) return null;
    return [...root.querySelectorAll('.log > *')].filter((el) => !el.classList.contains('draft')).map((el) => ({
      kind: el.classList.contains('me') ? 'me' : el.classList.contains('bot') ? 'bot' : 'note',
      id: el.getAttribute('data-message-id'),
      lang: el.getAttribute('lang'),
      text: (el.querySelector('.text') || el).textContent,
    }));
  });
}

async function botCount(page) {
  return (await transcript(page)).filter((m) => m.kind === 'bot').length;
}

// Waits for the n-th bot message and returns it.
async function waitForBot(page, n, timeout, what) {
  try {
    await page.waitForFunction((n) => {
      const root = document.querySelector('[data-careloop-webchat]')?.shadowRoot;
      return root && root.querySelectorAll('.log > .msg.bot:not(.draft)').length >= n;
    }, n, { timeout, polling: 100 });
  } catch (e) {
    fail(`no answer to ${what} within ${timeout / 1000} s; the chat shows: ${JSON.stringify(await transcript(page))}`);
  }
  const bots = (await transcript(page)).filter((m) => m.kind === 'bot');
  const notes = (await transcript(page)).filter((m) => m.kind === 'note');
  check(notes.length === 0, `the chat shows an error note: ${JSON.stringify(notes)}`);
  return bots[n - 1];
}

async function say(page, text, { click = false } = {}) {
  const before = await botCount(page);
  const input = page.locator('textarea');
  await input.fill(text);
  if (click) await page.getByRole('button', { name: 'Send' }).click();
  else await input.press('Enter');
  check((await input.inputValue()) === '', 'the input was not cleared after sending');
  return before;
}

async function main() {
  if (!base.startsWith('http')) fail('usage: node tests/browser/webchat.mjs <base_url>');
  check(existsSync(CHROMIUM), `${CHROMIUM} is missing: ./careloop.sh test installs it (setup_browser), or apt-get install chromium`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  const context = await browser.newContext({ viewport: { width: 375, height: 740 }, locale: 'en-US' });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`  browser console: ${m.text()}`); });

  step(`opening ${base}/chat`);
  await page.goto(`${base}/chat`);
  const panel = page.locator('.panel');
  await panel.waitFor({ state: 'visible', timeout: 10_000 });

  // Accessibility and layout on a phone.
  const log = page.getByRole('log');
  check(await log.getAttribute('aria-live') === 'polite', 'the message list is not an aria-live region');
  await page.getByRole('textbox', { name: 'Your message' }).waitFor();
  await page.getByRole('combobox', { name: 'Language' }).waitFor();
  await page.getByRole('combobox', { name: 'Reading level' }).waitFor();
  const box = await panel.boundingBox();
  check(box && box.width <= 375 && box.x >= 0, `the chat does not fit a 375 px screen: ${JSON.stringify(box)}`);
  check(await page.evaluate(() => document.documentElement.scrollWidth <= 375), 'the page scrolls sideways on a phone');

  step('onboarding');
  let n = await say(page, 'Hello');
  let reply = await waitForBot(page, n + 1, TEMPLATE_MS, 'the first message');
  check(/1\.\s*English/.test(reply.text), `the first reply does not ask for a language: ${reply.text}`);
  for (const [answer, expect, click] of [['1', /1\.\s*Type 2 diabetes/i, true], ['1', /Simple words/i, false], ['1', /yes/i, false], ['yes', /diabetes/i, false]]) {
    n = await say(page, answer, { click });
    reply = await waitForBot(page, n + 1, TEMPLATE_MS, `onboarding answer ${answer}`);
    check(expect.test(reply.text), `after "${answer}" the reply does not match ${expect}: ${reply.text}`);
  }

  step('asking a question (the model answers on the CPU; this takes a while)');
  await page.evaluate(() => {
    const root = document.querySelector('[data-careloop-webchat]').shadowRoot;
    const seen = (window.__careloopSeen = { typing: false, draft: false, bots: null });
    const bots = () => root.querySelectorAll('.log > .msg.bot:not(.draft)').length;
    seen.bots = bots();
    new MutationObserver(() => {
      if (bots() > seen.bots) return; // only what showed before the final message counts
      if (!root.querySelector('.typing').hidden) seen.typing = true;
      if (root.querySelector('.draft')) seen.draft = true;
    }).observe(root, { subtree: true, childList: true, attributes: true, characterData: true });
  });
  n = await say(page, 'What should I eat to keep my blood sugar under control?');
  reply = await waitForBot(page, n + 1, ANSWER_MS, 'the question');
  const seen = await page.evaluate(() => window.__careloopSeen);
  check(seen.typing || seen.draft, 'neither a typing indicator nor a streamed draft showed before the answer');
  check(reply.text.trim().length > 0, 'the answer is empty');
  check(await page.locator('.draft').count() === 0, 'the draft was not replaced by the final answer');
  step(`answered (typing shown: ${seen.typing}, draft streamed: ${seen.draft}, ${reply.text.length} characters)`);

  step('switching to Arabic');
  n = await botCount(page);
  await page.getByRole('combobox', { name: 'Language' }).selectOption('ar');
  check(await panel.getAttribute('dir') === 'rtl', 'the chat is not right-to-left after choosing Arabic');
  check(await panel.getAttribute('lang') === 'ar', 'the chat is not marked lang=ar');
  reply = await waitForBot(page, n + 1, TEMPLATE_MS, 'the language change');
  check(reply.lang === 'ar' && reply.text.includes('العربية'), `no Arabic confirmation: ${JSON.stringify(reply)}`);
  await page.getByRole('combobox', { name: 'اللغة' }).waitFor();

  step('reloading while an answer is on its way');
  const token = await page.evaluate(() => Object.entries(sessionStorage).find(([k]) => k.startsWith('careloop-webchat:'))?.[1]);
  const before = await transcript(page);
  const posted = page.waitForResponse((r) => r.url().endsWith('/webchat/messages') && r.request().method() === 'POST');
  n = await say(page, 'help');
  check((await posted).status() === 202, 'the message was not accepted');
  await page.reload();
  await panel.waitFor({ state: 'visible', timeout: 10_000 });
  check(await panel.getAttribute('dir') === 'rtl', 'the chat is not right-to-left after the reload');
  reply = await waitForBot(page, n + 1, TEMPLATE_MS, '"help" across the reload');
  await page.waitForTimeout(1500); // anything repeated would arrive now
  const after = await transcript(page);
  const expected = [...before, { kind: 'me', text: 'help' }];
  check(after.length === expected.length + 1, `after the reload the chat shows ${after.length} items, expected ${expected.length + 1}: ${JSON.stringify(after.slice(-4))}`);
  expected.forEach((item, i) => {
    check(after[i].kind === item.kind && after[i].text === item.text && (item.id || null) === after[i].id,
      `item ${i} changed across the reload: ${JSON.stringify(item)} → ${JSON.stringify(after[i])}`);
  });
  const ids = after.filter((m) => m.id).map((m) => m.id);
  check(new Set(ids).size === ids.length, `a message is shown twice: ${JSON.stringify(ids)}`);
  check(after[after.length - 1].kind === 'bot', 'the last item is not the answer to "help"');
  const tokenAfter = await page.evaluate(() => Object.entries(sessionStorage).find(([k]) => k.startsWith('careloop-webchat:'))?.[1]);
  check(token && JSON.parse(token).token === JSON.parse(tokenAfter).token, 'the reload started a new session');

  step('the embeddable launcher on another site');
  const site = await context.newPage();
  site.on('pageerror', (e) => pageErrors.push(String(e)));
  // A clinic's page on another origin (its own server on the loopback address: Chromium keeps
  // public pages from calling a local server).
  const clinicServer = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html lang="en"><head><meta name="viewport" content="width=device-width"><link rel="icon" href="data:,"></head><body><h1>Clinic</h1><script src="${base}/webchat/widget.js" defer></script></body></html>`);
  });
  await new Promise((resolve) => clinicServer.listen(0, '127.0.0.1', resolve));
  clinicServer.unref();
  const clinic = `http://localhost:${clinicServer.address().port}/`;
  const sessionCreated = site.waitForResponse((r) => r.url().endsWith('/webchat/session'), { timeout: 10_000 }).catch(() => null);
  await site.goto(clinic);
  const launcher = site.getByRole('button', { name: 'Open chat' });
  await launcher.waitFor({ timeout: 10_000 });
  await launcher.focus();
  await site.keyboard.press('Enter');
  check(await launcher.getAttribute('aria-expanded') === 'true', 'Enter on the launcher did not open the chat');
  await site.getByRole('dialog').waitFor({ state: 'visible' });
  check(await site.evaluate(() => document.querySelector('[data-careloop-webchat]').shadowRoot.activeElement?.tagName) === 'TEXTAREA',
    'focus is not in the message box after opening');
  const created = await sessionCreated;
  check(created && created.status() === 201, `the widget on another origin could not start a session: ${created && created.status()}`);
  await site.keyboard.press('Escape');
  check(await site.getByRole('dialog').isHidden(), 'Escape did not close the chat');
  check(await site.evaluate(() => document.querySelector('[data-careloop-webchat]').shadowRoot.activeElement?.className) === 'launcher',
    'focus did not return to the launcher');

  clinicServer.close();
  check(pageErrors.length === 0, `JavaScript errors: ${pageErrors.join('; ')}`);
  console.log(`webchat browser test passed in ${secs()} s`);
}

process.on('unhandledRejection', (e) => {
  console.error(`webchat browser test FAILED after ${secs()} s: ${e?.stack || e}`);
  process.exit(1);
});
try {
  await main();
} catch (e) {
  if (!process.exitCode) console.error(`webchat browser test FAILED after ${secs()} s: ${e?.stack || e}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
}
