// Accounts in a real browser, as an owner meets them: a forgotten password reset through the
// emailed link, adding and removing a colleague on the Team page, changing the password,
// setting up two-step login (the key read off the page into an "authenticator": RFC 6238
// computed here), logging in with a recovery code, and reading what all that left in the
// audit log.
// Run by crates/sluice/tests/it/browser.rs, which starts sluice and a mail server.
const { chromium } = require('playwright-core');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const base = process.env.SLUICE_URL;
const shots = process.env.SCREENSHOT_DIR || '';
const maildir = process.env.MAILDIR;
const owner = process.env.OWNER_EMAIL;

function check(condition, what) {
  if (!condition) throw new Error('browser test: ' + what);
}

function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/\s+/g, '')) {
    const v = alphabet.indexOf(c);
    check(v >= 0, 'a base32 key: ' + text);
    bits += v.toString(2).padStart(5, '0');
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

// What an authenticator app shows now (RFC 6238: HMAC-SHA1, 30 s, 6 digits).
function totp(secret, at) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30000)));
  const mac = crypto.createHmac('sha1', secret).update(counter).digest();
  const o = mac[mac.length - 1] & 0x0f;
  const bin = ((mac[o] & 0x7f) << 24) | (mac[o + 1] << 16) | (mac[o + 2] << 8) | mac[o + 3];
  return String(bin % 1000000).padStart(6, '0');
}

// The newest mail's text (aiosmtpd's Maildir; sluice sends the body base64-encoded).
async function mailText() {
  const dir = path.join(maildir, 'new');
  for (let i = 0; i < 200; i++) {
    const files = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
    if (files.length > 0) {
      const raw = fs.readFileSync(path.join(dir, files[0]), 'utf8');
      const [head, ...rest] = raw.split(/\r?\n\r?\n/);
      const body = rest.join('\n');
      return /base64/i.test(head) ? Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8') : body;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('browser test: no reset email arrived');
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  const shot = async (name) => {
    if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  };
  const login = async (email, password) => {
    await page.goto(base + '/login');
    await page.fill('input[name=email]', email);
    await page.fill('input[name=password]', password);
    await page.click('button:has-text("Log in")');
    await page.waitForLoadState('load');
  };
  const logout = async () => {
    await page.click('button:has-text("Log out")');
    await page.waitForURL('**/login');
  };

  // 1. Forgot the password: the link comes by email, works once.
  await page.goto(base + '/login');
  await page.click('a:has-text("Forgot your password?")');
  await page.waitForURL('**/reset');
  await page.fill('input[name=email]', owner);
  await page.click('button:has-text("Send me a link")');
  await page.waitForLoadState('load');
  check((await page.textContent('h1')).includes('Check your email'), 'the same answer for any address');
  await shot('reset-asked');
  const mail = await mailText();
  const link = (mail.match(/https:\/\/sluice\.example\.org\/reset\/\S+/) || [])[0];
  check(link, 'a link in the email: ' + mail);
  const resetUrl = link.replace('https://sluice.example.org', base);
  await page.goto(resetUrl);
  await page.fill('input[name=password]', 'reset-password-42');
  await page.click('button:has-text("Set it")');
  await page.waitForLoadState('load');
  check((await page.textContent('h1')).includes('Password set'), 'the new password is set');
  await page.goto(resetUrl);
  await page.fill('input[name=password]', 'another-password-42');
  await page.click('button:has-text("Set it")');
  await page.waitForLoadState('load');
  check((await page.textContent('h1')).includes('does not work'), 'the link works once');

  // 2. The Team page: add a colleague, then remove them.
  await login(owner, 'reset-password-42');
  check(page.url().endsWith('/t/acme'), 'the owner lands on the overview, not ' + page.url());
  await page.goto(base + '/t/acme/team');
  await page.fill('input[name=email]', 'cy@acme.org');
  await page.selectOption('select[name=role]', 'user');
  await page.fill('input[type=password][name=password]', 'first-password-42');
  await page.click('button:has-text("Add")');
  await page.waitForLoadState('load');
  check((await page.content()).includes('cy@acme.org'), 'cy is on the team');
  await shot('team');
  await page.click('tr:has-text("cy@acme.org") button:has-text("Remove")');
  await page.waitForLoadState('load');
  check(!(await page.$$eval('td', (tds) => tds.map((t) => t.textContent).join(' '))).includes('cy@acme.org'), 'cy is gone');

  // 3. Change the password on the account page: every session ends.
  await page.click(`a:has-text("${owner}")`);
  await page.waitForURL('**/account');
  await page.fill('input[name=current]', 'reset-password-42');
  await page.fill('input[name=new]', 'changed-password-42');
  await page.click('button:has-text("Change password")');
  await page.waitForURL('**/login');
  await login(owner, 'changed-password-42');
  check(page.url().endsWith('/t/acme'), 'logged in with the changed password');

  // 4. Two-step login: the key off the page into the "app", its code back.
  await page.goto(base + '/account');
  await page.click('button:has-text("Set up two-step login")');
  await page.waitForURL('**/account/second-factor');
  check((await page.$('svg')) !== null, 'a QR code');
  await shot('second-factor-setup');
  const key = (await page.textContent('p:has-text("Key:") code')).trim();
  const secret = base32(key);
  await page.fill('input[name=code]', totp(secret, Date.now()));
  await page.click('button:has-text("Switch it on")');
  await page.waitForLoadState('load');
  check((await page.textContent('h1')).includes('Two-step login is on'), 'switched on');
  const recovery = (await page.textContent('pre')).trim().split(/\s+/);
  check(recovery.length === 10, 'ten recovery codes: ' + recovery);
  await shot('second-factor-on');
  await page.click('a:has-text("Done")');
  await logout();

  // The password alone opens nothing; a recovery code does, once.
  await login(owner, 'changed-password-42');
  await page.waitForURL('**/login/code');
  await shot('login-code');
  await page.goto(base + '/t/acme');
  await page.waitForURL('**/login');
  await login(owner, 'changed-password-42');
  await page.waitForURL('**/login/code');
  await page.fill('input[name=code]', recovery[0]);
  await page.click('button:has-text("Log in")');
  await page.waitForURL('**/t/acme');

  // 5. The audit log shows all of it, newest first, and none of the secrets.
  await page.goto(base + '/t/acme/audit');
  const log = await page.textContent('table');
  for (const action of ['password_reset.asked', 'password_reset.used', 'user.add', 'user.remove', 'user.password', 'second_factor.on', 'login.second_factor']) {
    check(log.includes(action), 'the audit log has ' + action + ': ' + log);
  }
  for (const secret of ['reset-password-42', 'changed-password-42', 'first-password-42', recovery[0], key]) {
    check(!log.includes(secret), 'no secret in the audit log: ' + secret);
  }
  await shot('audit');

  await browser.close();
  console.log('browser test passed');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
