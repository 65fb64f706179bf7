// The dashboard in a real browser: log in, see an import that was just uploaded over SFTP,
// open its errors, download the report, press Sync now, approve a held import, and the
// operator's view. Screenshots go to $SCREENSHOT_DIR when it is set.
// Run by crates/sluice/tests/it/browser.rs, which starts sluice and prepares the data.
const { chromium } = require('playwright-core');
const fs = require('fs');

const base = process.env.SLUICE_URL;
const shots = process.env.SCREENSHOT_DIR || '';
const uploaded = process.env.UPLOADED_IMPORT;

function check(condition, what) {
  if (!condition) throw new Error('browser test: ' + what);
}

async function login(context, email, password) {
  const page = await context.newPage();
  await page.goto(base + '/');
  check(page.url().endsWith('/login'), 'an anonymous visitor is sent to the login page');
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await page.click('button:has-text("Log in")');
  await page.waitForLoadState('load');
  return page;
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, acceptDownloads: true });
  const shot = async (page, name) => {
    if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  };

  const first = await context.newPage();
  await first.goto(base + '/login');
  await shot(first, 'login');
  await first.close();

  const page = await login(context, process.env.OWNER_EMAIL, process.env.OWNER_PASSWORD);
  check(page.url().endsWith('/t/acme'), 'the owner lands on the tenant overview, not ' + page.url());
  check((await page.textContent('h1')).includes('acme'), 'the overview names the tenant');
  check(await page.isVisible('svg[aria-label^="Imports per day"]'), 'the overview has the chart');
  await shot(page, 'overview');

  // The import of the file just uploaded over SFTP, and its errors.
  await page.click(`a:has-text("#${uploaded}")`);
  await page.waitForURL(`**/imports/${uploaded}`);
  check(await page.isVisible('text=Rejected rows'), 'the import shows its rejected rows');
  const html = await page.content();
  check(html.includes('not a date'), 'a rejected value is shown');
  check(!html.includes('<img src=x'), 'a hostile value is not markup');
  check((await page.locator('img').count()) === 0, 'no image element came from the file');
  await shot(page, 'import-errors');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('text=Download the error report'),
  ]);
  const report = fs.readFileSync(await download.path(), 'utf8');
  // A UTF-8 byte-order mark first, so that Excel shows accents; each row names its record.
  check(report.startsWith('\uFEFFline,key,name,column,code,reason,value'), 'the report downloads as CSV with a BOM, not ' + JSON.stringify(report.slice(0, 60)));
  check(report.includes('S99,'), 'a rejected row names its record');
  check(report.includes('not a date'), 'the report has the rejected value');

  // Sync now imports the file waiting in the folder; the safeguard holds it.
  await page.goto(base + '/t/acme');
  check(await page.isVisible('text=Files waiting (1)'), 'the overview shows the file waiting in its folder');
  await page.click('button:has-text("Sync now")');
  await page.waitForURL('**/t/acme?done=*');
  check(await page.isVisible('text=Sync: 1 file was waiting'), 'Sync now says what it did');
  await page.goto(base + '/t/acme/imports');
  check(await page.isVisible('.badge.held'), 'the synced import is held by the safeguard');
  await shot(page, 'imports');
  await page.click('tr:has(.badge.held) a');
  await page.waitForURL('**/imports/*');
  check(await page.isVisible('text=held by the safeguard'), 'the held import says why');
  check(await page.isVisible('text=approving deletes S10 (First10 Last10), S11 (First11 Last11)'), 'the held import shows what approval deletes, with names');
  await shot(page, 'held');
  await page.click('button:has-text("Approve")');
  await page.waitForLoadState('load');
  check(await page.isVisible('h1 .badge.complete'), 'approval applies the held import');

  // On a phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(base + '/t/acme');
  await shot(page, 'overview-phone');

  // The operator sees every tenant.
  const operator = await login(await browser.newContext({ viewport: { width: 1100, height: 700 } }), 'admin', process.env.ADMIN_PASSWORD);
  check((await operator.textContent('h1')).includes('All tenants'), 'the operator lands on all tenants');
  check(await operator.isVisible('a[href="/t/beta"]'), 'the operator sees the other tenant');
  await shot(operator, 'operator');

  await browser.close();
  console.log('browser test passed');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
