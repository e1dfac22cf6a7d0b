// Baton's end-to-end browser suite: playwright-core driving Debian's Chromium,
// headless, against a running server (BATON_URL). Run by
// tests/tests/e2e/browser.rs, which starts the server and the agents.
//
// It plays the hand-over as people would: a visitor chats with the bot in the
// widget on the demo page and asks for a human; two agents see it arrive live
// in their inboxes and both click Claim; one wins, the other is told who did;
// the winner replies; the visitor sees the agent's name and the reply; the
// agent hands back and the bot answers again. Visitor text that looks like
// HTML stays text everywhere. Screenshots go to SCREENSHOT_DIR.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const BASE = need('BATON_URL');
const SHOTS = need('SCREENSHOT_DIR');
const [A_EMAIL, A_PASS, A_NAME] = need('AGENT_A').split(':');
const [B_EMAIL, B_PASS, B_NAME] = need('AGENT_B').split(':');
const XSS = '<img src=x onerror=alert(1)>';
const TIMEOUT = 15_000;

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return v;
}

const problems = [];
let current = 'start';
function step(name) {
  current = name;
  console.log(`- ${name}`);
}
function check(ok, message) {
  if (!ok) throw new Error(message);
}

/** Fails the run on script errors, CSP refusals and any dialog (an XSS would open one). */
function watch(page, who) {
  page.on('pageerror', (e) => problems.push(`${who}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) {
      problems.push(`${who}: ${m.text()}`);
    }
  });
  page.on('dialog', async (d) => {
    problems.push(`${who}: a dialog opened (${d.message()}): visitor text ran as code`);
    await d.dismiss();
  });
  return page;
}

async function poll(what, fn, timeout = TIMEOUT) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function signIn(page, email, password) {
  await page.goto(`${BASE}/inbox`);
  await page.getByTestId('login-email').fill(email);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('login-submit').waitFor({ state: 'detached', timeout: TIMEOUT });
}

const bubbles = (page, sender) =>
  page.locator(`[data-testid="widget-message"][data-sender="${sender}"]`);

async function say(page, text) {
  await page.getByTestId('widget-input').fill(text);
  await page.getByTestId('widget-send').click();
  await bubbles(page, 'visitor').filter({ hasText: text }).first().waitFor({ timeout: TIMEOUT });
}

async function shot(page, name) {
  await page.waitForTimeout(400); // let transitions settle
  await page.screenshot({ path: join(SHOTS, name) });
  console.log(`  screenshot ${name}`);
}

mkdirSync(SHOTS, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.BATON_CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const laptop = { viewport: { width: 1366, height: 800 } };
const phone = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };

let exitCode = 0;
const pages = {};
try {
  step('two agents sign in to the inbox in two browser contexts');
  const ctxA = await browser.newContext(laptop);
  const ctxB = await browser.newContext(laptop);
  const agentA = (pages.agentA = watch(await ctxA.newPage(), 'agent A'));
  const agentB = (pages.agentB = watch(await ctxB.newPage(), 'agent B'));
  await signIn(agentA, A_EMAIL, A_PASS);
  await signIn(agentB, B_EMAIL, B_PASS);

  step('a visitor opens the demo page and the widget');
  const ctxV = await browser.newContext(laptop);
  const visitor = (pages.visitor = watch(await ctxV.newPage(), 'visitor'));
  await visitor.goto(`${BASE}/`);
  await visitor.getByTestId('widget-launcher').click();
  await bubbles(visitor, 'bot').first().waitFor({ timeout: TIMEOUT }); // the greeting
  check(
    !(await visitor.getByTestId('widget-request-human').isVisible()),
    'the Talk-to-a-human button shows before the bot has answered anything',
  );

  step('the visitor chats with the bot');
  const botBefore = await bubbles(visitor, 'bot').count();
  await say(visitor, 'Hello! Do you ship tents to Canada?');
  await poll('the bot to answer', async () => (await bubbles(visitor, 'bot').count()) > botBefore);
  await say(visitor, XSS);
  await visitor.getByTestId('widget-request-human').waitFor({ state: 'visible', timeout: TIMEOUT });
  check((await visitor.locator('img[src="x"]').count()) === 0, 'visitor HTML became an <img> in the widget');
  const conversationId = await visitor.evaluate(
    () => JSON.parse(localStorage.getItem('baton.default.session')).conversation_id,
  );
  check(conversationId, 'the widget did not keep its session');

  step('the visitor asks for a human');
  await visitor.getByTestId('widget-request-human').click();
  await visitor.getByTestId('widget-request-human').waitFor({ state: 'hidden', timeout: TIMEOUT });

  step('both agents see the escalation appear live, without reloading');
  const item = (page) =>
    page.locator(`[data-testid="conversation-item"][data-conversation-id="${conversationId}"]`);
  for (const page of [agentA, agentB]) {
    await item(page).waitFor({ state: 'visible', timeout: TIMEOUT });
    await poll('the item to show status waiting', async () =>
      (await item(page).getAttribute('data-status')) === 'waiting');
    await item(page).click();
    await page.getByTestId('claim-button').waitFor({ state: 'visible', timeout: TIMEOUT });
  }
  await shot(agentA, 'inbox-escalation.png');

  step('both click Claim at once: exactly one wins');
  // Both buttons are in hand before either is pressed, and both presses go
  // out together: the live "claimed" event must not beat the second agent's
  // hand to the button, or this would test nothing.
  const buttons = await Promise.all(
    [agentA, agentB].map((page) => page.getByTestId('claim-button').elementHandle()),
  );
  await Promise.all(buttons.map((button) => button.evaluate((b) => b.click())));
  const outcome = await poll('one winner and one conflict', async () => {
    const aLost = await agentA.getByTestId('claim-conflict').isVisible();
    const bLost = await agentB.getByTestId('claim-conflict').isVisible();
    const aWon = await agentA.getByTestId('handback-button').isVisible();
    const bWon = await agentB.getByTestId('handback-button').isVisible();
    if (aWon && bLost) return { winner: agentA, loser: agentB, name: A_NAME };
    if (bWon && aLost) return { winner: agentB, loser: agentA, name: B_NAME };
    check(!(aWon && bWon), 'both agents hold the conversation');
    return null;
  });
  const { winner, loser, name: winnerName } = outcome;
  const conflict = (await loser.getByTestId('claim-conflict').textContent()).trim();
  check(
    conflict.includes(`Already claimed by ${winnerName}`),
    `the losing agent saw "${conflict}", not "Already claimed by ${winnerName}"`,
  );
  console.log(`  ${winnerName} won; the other agent saw "${conflict}"`);
  await shot(loser, 'inbox-claim-conflict.png');

  step('the winner replies; the visitor sees the name and the reply without reloading');
  const reply = `Hi, I'm ${winnerName.split(' ')[0]} from the team. Yes, we ship to Canada!`;
  await winner.getByTestId('composer-input').fill(reply);
  await winner.getByTestId('composer-send').click();
  await bubbles(visitor, 'agent').filter({ hasText: reply }).first().waitFor({ timeout: TIMEOUT });
  const indicator = visitor.getByTestId('widget-agent-indicator');
  await indicator.waitFor({ state: 'visible', timeout: TIMEOUT });
  const indicatorText = await indicator.textContent();
  check(indicatorText.includes(winnerName.split(' ')[0]), `agent indicator says "${indicatorText}"`);

  step('the visitor text that looks like HTML stays text in the inbox too');
  await winner.getByText(XSS, { exact: false }).first().waitFor({ timeout: TIMEOUT });
  check((await winner.locator('img[src="x"]').count()) === 0, 'visitor HTML became an <img> in the inbox');
  await shot(visitor, 'widget-laptop.png');
  await shot(winner, 'inbox-laptop.png');

  step('phone-sized screens show the same conversation');
  const ctxVP = await browser.newContext({ ...phone, storageState: await ctxV.storageState() });
  const visitorPhone = (pages.visitorPhone = watch(await ctxVP.newPage(), 'visitor (phone)'));
  await visitorPhone.goto(`${BASE}/`);
  await visitorPhone.getByTestId('widget-launcher').click();
  await bubbles(visitorPhone, 'agent').filter({ hasText: reply }).first().waitFor({ timeout: TIMEOUT });
  await shot(visitorPhone, 'widget-phone.png');
  const winnerCtx = winner === agentA ? ctxA : ctxB;
  const ctxWP = await browser.newContext({ ...phone, storageState: await winnerCtx.storageState() });
  const agentPhone = (pages.agentPhone = watch(await ctxWP.newPage(), 'agent (phone)'));
  await agentPhone.goto(`${BASE}/inbox#/c/${conversationId}`);
  await agentPhone.getByText(reply).first().waitFor({ timeout: TIMEOUT });
  await shot(agentPhone, 'inbox-phone.png');
  await ctxVP.close();
  await ctxWP.close();

  step('the agent hands back; the visitor is told and the bot answers again');
  await winner.getByTestId('handback-button').click();
  await bubbles(visitor, 'system').filter({ hasText: 'left' }).first().waitFor({ timeout: TIMEOUT });
  await indicator.waitFor({ state: 'hidden', timeout: TIMEOUT });
  const botNow = await bubbles(visitor, 'bot').count();
  await say(visitor, 'Thanks! And how long does delivery take?');
  await poll('the bot to answer after the hand back', async () =>
    (await bubbles(visitor, 'bot').count()) > botNow);
  check(
    (await bubbles(visitor, 'agent').filter({ hasText: reply }).count()) === 1,
    'the agent reply shows more than once',
  );
  await shot(visitor, 'widget-after-handback.png');

  step('the admin sees the hand-over in reports, tasks, notifications and settings');
  // Bob is the admin of the two; whoever won, the hand-over is in the reports.
  await agentB.goto(`${BASE}/inbox#/reports`);
  await agentB.getByTestId('report-by-reason').waitFor({ state: 'visible', timeout: TIMEOUT });
  await agentB.getByTestId('report-over-time').waitFor({ state: 'visible', timeout: TIMEOUT });
  check(
    (await agentB.getByTestId('report-by-reason').textContent()).includes('Visitor request'),
    'the report does not count the visitor_request hand-over',
  );
  await agentB.getByTestId('report-containment').waitFor({ state: 'visible', timeout: TIMEOUT });
  await shot(agentB, 'reports-laptop.png');
  await agentB.getByTestId('nav-tasks').click();
  await agentB.getByTestId('task-row').first().waitFor({ state: 'visible', timeout: TIMEOUT });
  check(
    (await agentB.getByTestId('task-row').first().textContent()).includes('Follow up'),
    'the hand-over task is not on the Tasks page',
  );
  await shot(agentB, 'tasks-laptop.png');
  await agentB.getByTestId('notifications-bell').click();
  await agentB.getByTestId('notifications-panel').waitFor({ state: 'visible', timeout: TIMEOUT });
  await agentB.keyboard.press('Escape');
  await agentB.goto(`${BASE}/inbox#/admin/knowledge`);
  await poll('knowledge-base entries', async () => (await agentB.getByTestId('kb-entry').count()) > 10);
  await shot(agentB, 'knowledge-laptop.png');
  await agentB.goto(`${BASE}/inbox#/admin/bots`);
  await agentB.getByTestId('action-list').waitFor({ state: 'visible', timeout: TIMEOUT });
  await shot(agentB, 'bot-settings-laptop.png');

  step('the admin creates and revokes an API token, and removes an agent');
  await agentB.goto(`${BASE}/inbox#/admin/users`);
  await agentB.getByTestId('tokens-table').waitFor({ state: 'visible', timeout: TIMEOUT });
  await agentB.getByTestId('token-name').fill('browser check');
  await agentB.getByTestId('token-create').click();
  const secret = (await agentB.getByTestId('token-secret').textContent({ timeout: TIMEOUT })).trim();
  check(secret.startsWith('bt_'), `the new token is not shown: ${secret}`);
  const asToken = async () => (await fetch(`${BASE}/api/v1/me`, { headers: { authorization: `Bearer ${secret}` } })).status;
  check((await asToken()) === 200, 'the token made on the Users page does not work');
  const row = agentB.locator('[data-token-id]').filter({ hasText: 'browser check' });
  await row.getByTestId('token-revoke').click();
  await row.getByTestId('token-revoke').click(); // the second click confirms
  await poll('the token to stop working', async () => (await asToken()) === 401);
  await poll('the revoked token to leave the list', async () => (await agentB.locator('[data-token-id]').filter({ hasText: 'browser check' }).count()) === 0);
  const alice = agentB.locator('tr[data-user-id]').filter({ hasText: A_EMAIL });
  await alice.getByTestId('user-remove').click();
  await shot(agentB, 'users-laptop.png');
  await alice.getByTestId('user-remove').click();
  await poll('the removed agent to leave the list', async () => (await agentB.locator('tr[data-user-id]').filter({ hasText: A_EMAIL }).count()) === 0);
  check((await agentB.getByTestId('user-remove').count()) === 0, 'Bob is offered to remove himself');
  await agentA.reload();
  await agentA.getByTestId('login-email').waitFor({ state: 'visible', timeout: TIMEOUT });

  step('the demo page on a phone, widget closed');
  const ctxLanding = await browser.newContext(phone);
  const landing = watch(await ctxLanding.newPage(), 'landing (phone)');
  await landing.goto(`${BASE}/`);
  await landing.getByTestId('widget-launcher').waitFor({ timeout: TIMEOUT });
  await shot(landing, 'landing-phone.png');
  const ctxLandingLaptop = await browser.newContext(laptop);
  const landingLaptop = watch(await ctxLandingLaptop.newPage(), 'landing');
  await landingLaptop.goto(`${BASE}/`);
  await landingLaptop.getByTestId('widget-launcher').waitFor({ timeout: TIMEOUT });
  await shot(landingLaptop, 'landing-laptop.png');

  check(problems.length === 0, `problems seen:\n  ${problems.join('\n  ')}`);
  console.log('browser suite: all steps passed');
} catch (e) {
  exitCode = 1;
  console.error(`FAILED at step "${current}": ${e.message}`);
  if (problems.length) console.error(`also seen:\n  ${problems.join('\n  ')}`);
  for (const [who, page] of Object.entries(pages)) {
    try {
      await page.screenshot({ path: join(SHOTS, `failure-${who}.png`) });
    } catch {
      /* the page may be gone */
    }
  }
} finally {
  await browser.close();
}
process.exit(exitCode);
