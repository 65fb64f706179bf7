// Records in a real browser: search a type's records, sort them, open one with its person and
// relationships, follow a relationship both ways, delete it after the confirmation page, find
// a person; and what a plain user sees (no delete button, the delete page refused).
// Run by crates/sluice/tests/it/browser.rs, which starts sluice and prepares the data.
const { chromium } = require('playwright-core');

const base = process.env.SLUICE_URL;
const shots = process.env.SCREENSHOT_DIR || '';

function check(condition, what) {
  if (!condition) throw new Error('browser test: ' + what);
}

async function login(browser, email, password) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  await page.goto(base + '/login');
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await page.click('button:has-text("Log in")');
  await page.waitForLoadState('load');
  return page;
}

async function keys(page) {
  return page.$$eval('table tr td:first-child a', (as) => as.map((a) => a.textContent.trim()));
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const shot = async (page, name) => {
    if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  };

  const page = await login(browser, process.env.OWNER_EMAIL, process.env.OWNER_PASSWORD);
  check(page.url().endsWith('/t/acme'), 'the owner lands on the overview, not ' + page.url());
  // The overview's record counts link to the records.
  await page.click('td a:has-text("students")');
  await page.waitForURL('**/t/acme/records/students');
  check((await page.textContent('p.count')).includes('4 records'), 'the page counts the records');

  await page.fill('input[name=q]', 'smi');
  await page.click('button:has-text("Search")');
  await page.waitForURL('**/records/students?q=smi*');
  check((await page.textContent('p.count')).includes('2 records match'), 'the search counts its matches');
  check(JSON.stringify(await keys(page)) === '["st1","st2"]', 'smi finds Smith and Smithers: ' + (await keys(page)));
  await shot(page, 'records-search');

  await page.fill('input[name=q]', '');
  await page.selectOption('select[name=sort]', 'name');
  await page.selectOption('select[name=order]', 'desc');
  await page.click('button:has-text("Search")');
  await page.waitForLoadState('load');
  check(JSON.stringify(await keys(page)) === '["st3","st2","st1","st4"]', 'by name, descending: ' + (await keys(page)));

  // One record: every field, its person, what refers to it, what wrote it.
  await page.click('td a:text-is("st1")');
  await page.waitForURL('**/records/students/st1');
  check((await page.textContent('h1')).includes('students st1'), 'the record page names the record');
  check(await page.isVisible('table.fields th:text-is("firstName")'), 'column names head the fields');
  check(await page.isVisible('table.fields td:text-is("ann.smith@acme.org")'), 'every field is shown');
  check(await page.isVisible('a:has-text("Ann Smith")'), 'its person is linked');
  check(await page.isVisible('text=guardians referring to it'), 'its guardians are listed');
  check(await page.isVisible('a:has-text("import #")'), 'the import that wrote it is linked');
  const width = await page.$eval('img.photo', (img) => img.complete ? img.naturalWidth : 0);
  check(width === 40, 'its photo is shown, decoded (width ' + width + ')');
  await shot(page, 'record');

  // A relationship both ways: to the guardian, and from the guardian back to the student.
  await page.click('.relationships a:has-text("st1+G1")');
  await page.waitForURL('**/records/guardians/st1%2BG1');
  check((await page.textContent('h1')).includes('guardians st1+G1'), 'the guardian opens');
  check(await page.isVisible('a:has-text("Cy Smith")'), 'the guardian is a person too');
  await page.click('.relationships a:has-text("students st1")');
  await page.waitForURL('**/records/students/st1');

  // Delete, after a page that says what refers to it and what happens to them.
  await page.click('button:has-text("Delete…")');
  await page.waitForURL('**/records/students/st1/delete*');
  check(await page.isVisible('text=1 guardians refer to it'), 'the confirmation lists what refers to it');
  check(await page.isVisible('text=kept as they are'), 'the confirmation says what happens to them');
  await shot(page, 'record-delete');
  await page.click('button:has-text("Delete students st1")');
  await page.waitForURL('**/records/students?done=*');
  check(await page.isVisible('text=Deleted students st1'), 'the deletion is reported');
  check((await page.textContent('p.count')).includes('3 records'), 'one record fewer');

  // People: search, one person with every role.
  await page.goto(base + '/t/acme/people?q=cy');
  check((await page.textContent('p.count')).includes('1 people'), 'one person called Cy');
  await page.click('td a:has-text("Smith, Cy")');
  await page.waitForURL('**/t/acme/people/*');
  check(await page.isVisible('a:has-text("guardians st1+G1")'), 'the person lists their roles');

  // A plain user browses but sees no delete button, and the delete page refuses.
  const user = await login(browser, process.env.USER_EMAIL, process.env.USER_PASSWORD);
  await user.goto(base + '/t/acme/records/students/st2');
  check((await user.textContent('h1')).includes('students st2'), 'a plain user sees the record');
  check((await user.locator('button:has-text("Delete")').count()) === 0, 'a plain user sees no delete button');
  const refused = await user.goto(base + '/t/acme/records/students/st2/delete');
  check(refused.status() === 403, 'the delete page refuses a plain user: ' + refused.status());
  await user.goto(base + '/t/beta/records/students/st2');
  check((await user.textContent('h1')).includes('Not found'), "another tenant's record is not found");

  await browser.close();
  console.log('records browser test passed');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
