// SPDX-License-Identifier: GPL-3.0-or-later
//
// Orthanc Explorer with the Orthanc Enhance extension, driven in Debian's Chromium as a
// radiologist would use it. test_explorer.py starts Orthanc (authentication on), loads a
// phantom study and passes its IDs in the environment; run through that script.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

const env = process.env;
const SOURCE = env.ENHANCE_SOURCE_SERIES;
const SUPERRES = env.ENHANCE_SUPERRES_SERIES;
const STUDY = env.ENHANCE_STUDY;
const DOOMED = env.ENHANCE_DOOMED_SERIES;
const MR_SOURCE = env.ENHANCE_MR_SOURCE_SERIES;
const MR_SUPERRES = env.ENHANCE_MR_SUPERRES_SERIES;
const MR_COMPRESSED = env.ENHANCE_MR_COMPRESSED_SERIES;
const UNCERTAINTY = env.ENHANCE_UNCERTAINTY_SERIES;
const SAMPLED_MEAN = env.ENHANCE_SAMPLED_MEAN_SERIES;
const OUTSIDE_SOURCE = env.ENHANCE_OUTSIDE_SOURCE_SERIES;
const OUTSIDE = env.ENHANCE_OUTSIDE_SERIES;
const SHOTS = env.ENHANCE_SCREENSHOTS;
const JOB_TIMEOUT_MS = 120000;

let browser;
let context;
let denoised;  // the series the radiologist made from the series page
let page;
const pageErrors = [];

// jQuery Mobile fades pages in: a picture taken too early shows a washed-out page.
async function settled() {
  await page.waitForFunction(
    () => !document.querySelector('.ui-mobile-viewport-transitioning, .ui-page.in, .ui-page.out'));
}

async function shot(name) {
  await settled();
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

// The top of the page down to the end of `locator`: the part worth showing in the docs.
async function shotDown(name, locator) {
  await settled();
  const box = await locator.boundingBox();
  const width = page.viewportSize().width;
  const height = Math.min(page.viewportSize().height, Math.ceil(box.y + box.height + 12));
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), clip: { x: 0, y: 0, width, height } });
}

async function api(method, uri, data) {
  const response = await context.request.fetch(uri, { method, data });
  return { status: response.status(), body: await response.json() };
}

async function openExplorer(hash) {
  // A fresh document each time, as a bookmark or a typed address would give.
  await page.goto('about:blank');
  await page.goto(`/app/explorer.html${hash}`);
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: env.ENHANCE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--no-first-run'],
  });
  // The credentials belong to the browser session, as after a login prompt.
  context = await browser.newContext({
    baseURL: env.ENHANCE_URL,
    httpCredentials: { username: env.ENHANCE_USER, password: env.ENHANCE_PASSWORD },
    viewport: { width: 1280, height: 860 },
  });
  page = await context.newPage();
  page.setDefaultTimeout(30000);
  page.on('pageerror', (error) => pageErrors.push(error.message));
});

after(async () => {
  if (browser) await browser.close();
});

test('the home page leads to the status view', async () => {
  await openExplorer('');
  const link = page.locator('#enhance-status-link');
  await link.waitFor();
  assert.match(await link.innerText(), /status and models/);
  await shotDown('home', link);
  await link.click();
  await page.locator('#enhance-status-system').waitFor();
  const system = (await api('GET', '/enhance/system')).body;
  const content = page.locator('#enhance-status-content');
  assert.match(await content.innerText(), new RegExp(`Orthanc Enhance ${system.Version}`));
  assert.match(await page.locator('#enhance-status-system').innerText(), new RegExp(system.Device));
  const models = await page.locator('#enhance-status-models').innerText();
  for (const model of system.Models) assert.ok(models.includes(model.Name), model.Name);
  await shot('status');
});

test('a series is denoised from its page and the derived series is marked', { timeout: 240000 },
     async () => {
  await openExplorer(`#series?uuid=${SOURCE}`);
  const menu = page.locator('#enhance-menu');
  await menu.waitFor();
  await menu.locator('.ui-collapsible-heading').click();

  // Only the models for CT are offered, each with its version and intended use.
  const models = (await api('GET', '/enhance/models')).body;
  const forCt = models.filter((m) => m.Modalities.includes('CT'));
  const offered = await menu.locator('a.enhance-start').evaluateAll(
    (links) => links.map((a) => a.getAttribute('data-model')));
  assert.deepEqual(offered.sort(), forCt.map((m) => m.Name).sort());
  const bilateral = forCt.find((m) => m.Name === 'classical-bilateral');
  const item = menu.locator('a.enhance-start[data-model="classical-bilateral"]');
  assert.match(await item.innerText(), new RegExp(`${bilateral.Version}[\\s\\S]*${bilateral.IntendedUse.slice(0, 30)}`));
  await shotDown('series-menu', menu);

  // The card of the new job is the one whose job did not exist before the click.
  const known = (await api('GET', '/jobs')).body;
  await item.click();
  const jobId = await (await page.waitForFunction((ids) => {
    const cards = document.querySelectorAll('#enhance-series-jobs .enhance-job');
    const fresh = [...cards].find((c) => !ids.includes(c.getAttribute('data-job')));
    return fresh ? fresh.getAttribute('data-job') : null;
  }, known)).jsonValue();
  const card = page.locator(`#enhance-series-jobs .enhance-job[data-job="${jobId}"]`);
  await page.locator(`#enhance-series-jobs .enhance-job[data-job="${jobId}"][data-state]`).waitFor();
  assert.match(await card.locator('h4').innerText(), /^Denoising with classical-bilateral/);
  await shotDown('series-progress', card);
  await page.locator(`#enhance-series-jobs .enhance-job[data-job="${jobId}"][data-state="Success"]`)
    .waitFor({ timeout: JOB_TIMEOUT_MS });
  const job = (await api('GET', `/jobs/${jobId}`)).body;
  assert.equal(job.Content.SourceSeries, SOURCE, JSON.stringify(job));
  denoised = job.Content.DerivedSeries;
  assert.equal(job.Content.Model, 'classical-bilateral');
  await shotDown('series-done', card);

  // The link leads to the derived series, whose page says what made it.
  await card.locator('a.enhance-derived-link').click();
  const banner = page.locator('#enhance-derived-banner');
  await banner.locator('h2').waitFor();
  assert.ok(page.url().endsWith(`#series?uuid=${job.Content.DerivedSeries}`), page.url());
  const text = await banner.innerText();
  assert.match(text, /AI-derived series: not an acquired image/);
  assert.match(text, /Task: Denoising \(denoise\)/);
  assert.match(text, new RegExp(`Model: classical-bilateral, version ${bilateral.Version}`));
  assert.match(await page.locator('#series .enhance-badge').innerText(), /AI-derived/);
  // A series within its model's domain (this model has no domain check) carries no warning.
  assert.equal(await banner.locator('.enhance-domain-warning').count(), 0);
  assert.equal(await page.locator('#series .enhance-badge-domain').count(), 0);
  assert.equal(await page.locator('#enhance-menu').count(), 0, 'derived series offer no enhancement');
  const sourceLink = page.locator('#enhance-source-link');
  assert.equal(await sourceLink.getAttribute('href'), `#series?uuid=${SOURCE}`);

  await page.locator('#enhance-evaluate').click();
  const metrics = page.locator('.enhance-metrics-table');
  await metrics.waitFor();
  const figures = await metrics.innerText();
  for (const name of ['PSNR', 'SSIM', 'MAE', 'RMSE']) assert.match(figures, new RegExp(name));
  assert.match(figures, /\d+\.\d+ dB/);
  await shotDown('derived', banner);

  // Each image of the series says the same on its own page.
  await page.locator('#list-instances a').first().click();
  const imageBanner = page.locator('#enhance-instance-banner');
  await imageBanner.locator('h2').waitFor();
  assert.match(await imageBanner.innerText(), /AI-derived image: not an acquired image[\s\S]*Task: Denoising/);
  assert.match(await page.locator('#instance .enhance-badge').innerText(), /AI-derived/);
  assert.equal(await imageBanner.locator('.enhance-domain-warning').count(), 0);
  await shotDown('derived-instance', imageBanner);
  await page.locator('#enhance-instance-series').click();
  await banner.locator('h2').waitFor();

  // Back to the source on the same Explorer page: the banner goes, the menu returns.
  await sourceLink.click();
  await page.locator('#enhance-menu').waitFor();
  assert.ok(page.url().endsWith(`#series?uuid=${SOURCE}`), page.url());
  assert.equal(await banner.isVisible(), false);
  await page.locator('#enhance-series-jobs .enhance-job[data-state="Success"]').first().waitFor();
});

// --- The compare view ------------------------------------------------------------------------

// A stored value in physical units, read from the instance's own pixel data and tags (not
// through the numpy route the view uses): the frame's raw stored value x RescaleSlope +
// RescaleIntercept.
async function physicalValue(instance, row, column) {
  const tags = (await api('GET', `/instances/${instance}/simplified-tags`)).body;
  const raw = await (await context.request.get(`/instances/${instance}/frames/0/raw`)).body();
  const index = row * Number(tags.Columns) + column;
  const stored = Number(tags.PixelRepresentation) === 1 ? raw.readInt16LE(2 * index)
    : raw.readUInt16LE(2 * index);
  return stored * Number(tags.RescaleSlope || 1) + Number(tags.RescaleIntercept || 0);
}

async function rendered() {
  const handle = await page.waitForFunction(
    () => document.querySelector('#enhance-compare-view')?.getAttribute('data-rendered') || null);
  return Number(await handle.jsonValue());
}

async function renderedBecomes(index) {
  await page.waitForFunction(
    (k) => document.querySelector('#enhance-compare-view')?.getAttribute('data-rendered') === String(k), index);
}

// Non-black pixels of a pane's canvas: something was drawn.
async function litPixels(kind) {
  return page.evaluate((k) => {
    const canvas = document.querySelector(`.enhance-compare-${k} canvas`);
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let lit = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] > 0) lit += 1;
    return lit;
  }, kind);
}

// Moves the mouse over a pane and returns what the readout says of both series.
async function hover(kind, x, y) {
  const box = await page.locator(`.enhance-compare-${kind} canvas`).boundingBox();
  await page.mouse.move(box.x + x, box.y + y);
  return page.evaluate(() => {
    const read = (name) => {
      const e = document.querySelector(`.enhance-compare-value-${name}`);
      return { instance: e.getAttribute('data-instance'), row: Number(e.getAttribute('data-row')),
               column: Number(e.getAttribute('data-column')), value: Number(e.getAttribute('data-value')),
               text: e.textContent };
    };
    return { source: read('source'), derived: read('derived'),
             difference: document.querySelector('.enhance-compare-value-difference').textContent };
  });
}

async function checkValue(reading) {
  assert.ok(reading.instance, JSON.stringify(reading));
  const expected = await physicalValue(reading.instance, reading.row, reading.column);
  assert.ok(Math.abs(reading.value - expected) <= 1e-3 * Math.max(1, Math.abs(expected)),
            `${JSON.stringify(reading)}: expected ${expected}`);
  assert.ok(reading.text.includes(expected.toFixed(1)), `${reading.text} shows ${expected}`);
}

test('a denoised CT and its source side by side, scrolled, windowed and read in HU',
     async () => {
  assert.ok(denoised, 'the denoising test made a series');
  await openExplorer(`#series?uuid=${denoised}`);
  await page.locator('#enhance-compare-link').click();
  let index = await rendered();
  assert.ok(page.url().includes(`enhance-compare?source=${SOURCE}&derived=${denoised}`), page.url());
  assert.ok(await litPixels('source') > 1000);
  assert.ok(await litPixels('derived') > 1000);
  const panes = () => page.evaluate(() => [...document.querySelectorAll('.enhance-compare-pane')]
    .map((p) => p.getAttribute('data-slice')));
  // No uncertainty series for this model: no such view; no domain warning either.
  assert.equal(await page.locator('.enhance-compare-toggle-uncertainty').count(), 0);
  assert.equal(await page.locator('.enhance-compare-domain').count(), 0);
  // Same grid: the same slice of both series.
  assert.deepEqual((await panes()).slice(0, 2), [String(index), String(index)]);

  // The wheel, the arrow keys and the slider move both series together.
  const derivedCanvas = page.locator('.enhance-compare-derived canvas');
  await derivedCanvas.hover();
  await page.mouse.wheel(0, 120);
  await renderedBecomes(index + 1);
  await page.keyboard.press('ArrowUp');
  await page.keyboard.press('ArrowUp');
  await renderedBecomes(index - 1);
  await page.locator('.enhance-compare-slider').evaluate((e) => {
    e.value = '0';
    e.dispatchEvent(new Event('input', { bubbles: true }));
  });
  await renderedBecomes(0);
  assert.deepEqual((await panes()).slice(0, 2), ['0', '0']);
  index = 0;

  // Window presets and dragging.
  const windowText = page.locator('.enhance-compare-window');
  assert.equal(await windowText.innerText(), 'Window 400 / level 40 HU');
  await page.locator('.enhance-compare-preset[data-preset="Lung"]').click();
  assert.equal(await windowText.innerText(), 'Window 1500 / level -600 HU');
  const box = await derivedCanvas.boundingBox();
  await page.mouse.move(box.x + 200, box.y + 200);
  await page.mouse.down();
  await page.mouse.move(box.x + 260, box.y + 200, { steps: 4 });
  await page.mouse.up();
  assert.match(await windowText.innerText(), /^Window (\d+) \/ level -600 HU$/);
  assert.ok(Number(/Window (\d+)/.exec(await windowText.innerText())[1]) > 1500);
  await page.locator('.enhance-compare-preset[data-preset="Soft tissue"]').click();

  // Values under the cursor are the stored values in HU, in both panes, at the same pixel.
  for (const [x, y] of [[220, 220], [150, 260], [300, 120]]) {
    const reading = await hover('derived', x, y);
    await checkValue(reading.source);
    await checkValue(reading.derived);
    assert.equal(reading.source.row, reading.derived.row);
    assert.equal(reading.source.column, reading.derived.column);
  }
  // The difference view: derived minus source, in HU.
  await page.locator('.enhance-compare-toggle-difference').click();
  await page.locator('.enhance-compare-difference[data-loaded="true"]').waitFor();
  assert.ok(await litPixels('difference') > 1000);
  const reading = await hover('difference', 220, 220);
  const difference = (reading.derived.value - reading.source.value).toFixed(1);
  assert.equal(reading.difference, `Derived - source: ${difference} HU`);
  assert.match(await page.locator('.enhance-compare-difference-window').innerText(),
               /^Difference window: -50 to \+50 HU$/);
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot('compare-ct');
});

test('a super-resolved MR lines up with its source by position', async () => {
  // From the source series' list of what was derived from it.
  await openExplorer(`#series?uuid=${MR_SOURCE}`);
  const item = page.locator(`#enhance-derived-list .enhance-derived-item[data-series="${MR_SUPERRES}"]`);
  await item.waitFor();
  assert.match(await item.innerText(), /Super-resolution with classical-bicubic-x2/);
  assert.equal(await item.locator('.enhance-derived-domain').count(), 0);
  await item.locator('a.enhance-derived-compare').click();
  const index = await rendered();
  const slices = await page.evaluate(() => [...document.querySelectorAll('.enhance-compare-pane')]
    .map((p) => p.getAttribute('data-slice')));
  assert.deepEqual(slices.slice(0, 2), [String(index), String(index)]);
  assert.equal(await page.locator('.enhance-compare-preset').count(), 0, 'no CT presets for MR');
  // MR: an automatic window from the values, not a fixed preset.
  assert.match(await page.locator('.enhance-compare-window').innerText(), /^Window \d+ \/ level \d+$/);
  // The x2 grid: derived pixel (r, c) lies in source pixel (r / 2, c / 2), rounded down.
  for (const [x, y] of [[220, 220], [101, 187], [333, 250]]) {
    const reading = await hover('source', x, y);
    await checkValue(reading.source);
    await checkValue(reading.derived);
    assert.equal(reading.source.row, Math.floor(reading.derived.row / 2), JSON.stringify(reading));
    assert.equal(reading.source.column, Math.floor(reading.derived.column / 2), JSON.stringify(reading));
  }
  // A JPEG-compressed copy of the source (decoded by Orthanc, not read as stored) shows the
  // same values at the same pixels.
  const plain = await hover('source', 180, 200);
  await openExplorer(`#enhance-compare?source=${MR_COMPRESSED}&derived=${MR_SUPERRES}`);
  await rendered();
  const compressed = await hover('source', 180, 200);
  assert.notEqual(compressed.source.instance, plain.source.instance);
  assert.equal(compressed.source.row, plain.source.row);
  assert.equal(compressed.source.column, plain.source.column);
  assert.equal(compressed.source.value, plain.source.value);
  assert.equal(compressed.derived.value, plain.derived.value);
  // Zoom and pan move both panes.
  await page.locator('.enhance-compare-zoom-in').click();
  const zoomed = await hover('source', 220, 220);
  await checkValue(zoomed.derived);
  const box = await page.locator('.enhance-compare-source canvas').boundingBox();
  await page.keyboard.down('Shift');
  await page.mouse.move(box.x + 220, box.y + 220);
  await page.mouse.down();
  await page.mouse.move(box.x + 280, box.y + 220, { steps: 4 });
  await page.mouse.up();
  await page.keyboard.up('Shift');
  const panned = await hover('source', 220, 220);
  // The image moved right under the cursor: it now points further left, in both panes.
  assert.ok(panned.source.column < zoomed.source.column, JSON.stringify([zoomed, panned]));
  assert.ok(panned.derived.column < zoomed.derived.column, JSON.stringify([zoomed, panned]));
  assert.equal(panned.source.row, zoomed.source.row);
  assert.equal(panned.source.column, Math.floor(panned.derived.column / 2));
  await page.locator('.enhance-compare-fit').click();
  await page.evaluate(() => window.scrollTo(0, 0));
  await hover('derived', 200, 180);
  await shot('compare-mr');
});

test('an uncertainty map says what it is and offers no comparison', async () => {
  await openExplorer(`#series?uuid=${UNCERTAINTY}`);
  const banner = page.locator('#enhance-derived-banner');
  await banner.locator('h2').waitFor();
  assert.equal(await banner.locator('h2').innerText(),
               "AI uncertainty map: where the model's samples disagree, not an image of the patient");
  assert.match(await banner.innerText(), /Task: Denoising \(denoise\)/);
  assert.match(await banner.innerText(), /Model: ct-diffusion/);
  await page.locator('#enhance-source-link').waitFor();
  assert.equal(await page.locator('#enhance-compare-link').count(), 0);
  assert.equal(await page.locator('#enhance-evaluate').count(), 0);
  await shotDown('uncertainty', banner);
});

test('the compare view shows the uncertainty map of a diffusion model beside its mean', async () => {
  await openExplorer(`#series?uuid=${SAMPLED_MEAN}`);
  await page.locator('#enhance-compare-link').click();
  await rendered();
  const toggle = page.locator('.enhance-compare-toggle-uncertainty');
  await toggle.click();
  await page.locator('.enhance-compare-uncertainty[data-loaded="true"]').waitFor();
  assert.ok(await litPixels('uncertainty') > 100);
  assert.match(await page.locator('.enhance-compare-uncertainty-window').innerText(),
               /^Standard deviation across samples, 0 to \d+\.\d HU$/);
  // The standard deviation under the cursor is the map's stored value, at the same pixel.
  await hover('uncertainty', 200, 200);
  const spread = await page.evaluate(() => {
    const e = document.querySelector('.enhance-compare-value-uncertainty');
    return { instance: e.getAttribute('data-instance'), row: Number(e.getAttribute('data-row')),
             column: Number(e.getAttribute('data-column')), value: Number(e.getAttribute('data-value')),
             text: e.textContent };
  });
  await checkValue(spread);
  const series = (await api('GET', `/instances/${spread.instance}`)).body.ParentSeries;
  assert.equal(series, UNCERTAINTY);
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot('compare-uncertainty');
});

// The warning of the domain check, as the plugin wrote it into the derived images.
async function expectDomainWarning(block, warning) {
  assert.ok(await block.isVisible());
  assert.equal(await block.getAttribute('role'), 'alert');
  assert.match(await block.locator('h3').innerText(), /^Outside the model's training domain/);
  assert.equal(await block.locator('.enhance-domain-text').innerText(), warning);
  const text = await block.innerText();
  assert.match(text, /outside the domain the model was trained on/);
  assert.match(text, /domain score \d+\.\d\d above the threshold 0\.05/);
}

test('a series outside the model\'s domain is marked as such on every page', async () => {
  const first = (await api('GET', `/series/${OUTSIDE}`)).body.Instances[0];
  const tags = (await api('GET', `/instances/${first}/simplified-tags`)).body;
  const warning = tags.ImageComments;
  assert.match(warning, /^WARNING: outside the domain the model was trained on \(domain score/);

  // The series page: the warning opens the banner, in a block of its own.
  await openExplorer(`#series?uuid=${OUTSIDE}`);
  const banner = page.locator('#enhance-derived-banner');
  await banner.locator('h2').waitFor();
  const block = banner.locator('.enhance-domain-warning');
  await expectDomainWarning(block, warning);
  assert.equal(await banner.evaluate((b) => b.firstElementChild.className), 'enhance-domain-warning');
  // Its colours are not the banner's amber.
  const colours = await block.evaluate(
    (e) => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color]);
  assert.deepEqual(colours, ['rgb(183, 28, 28)', 'rgb(255, 255, 255)']);
  assert.match(await page.locator('#series .enhance-badge-domain').innerText(), /Outside training domain/);
  // The task is still read from the derivation behind the warning.
  assert.match(await banner.innerText(), /Task: Denoising \(denoise\)/);
  assert.match(await banner.innerText(), /Model: ct-outside-domain/);
  await page.locator('#enhance-compare-link').waitFor();
  await shotDown('derived-outside-domain', banner);

  // Each image says the same.
  await settled();
  await page.locator('#list-instances a').first().click();
  const imageBanner = page.locator('#enhance-instance-banner');
  await imageBanner.locator('h2').waitFor();
  await expectDomainWarning(imageBanner.locator('.enhance-domain-warning'), warning);
  assert.match(await page.locator('#instance .enhance-badge-domain').innerText(), /Outside training domain/);
  await page.locator('#enhance-instance-series').click();
  await banner.locator('h2').waitFor();

  // The compare view, above the panes. A link followed while jQuery Mobile still brings in
  // the series page may be undone by that transition: the test waits as a reader would.
  await settled();
  await page.locator('#enhance-compare-link').click();
  await rendered();
  const compared = page.locator('#enhance-compare-view .enhance-compare-domain');
  assert.ok(await compared.isVisible());
  assert.equal(await compared.getAttribute('role'), 'alert');
  assert.match(await compared.locator('h3').innerText(), /^Outside the model's training domain/);
  assert.equal(await compared.locator('.enhance-domain-text').innerText(), warning);
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot('compare-outside-domain');

  // The source series: its list of derived series and the card of the job say so too.
  await openExplorer(`#series?uuid=${OUTSIDE_SOURCE}`);
  const item = page.locator(`#enhance-derived-list .enhance-derived-item[data-series="${OUTSIDE}"]`);
  await item.waitFor();
  assert.match(await item.locator('.enhance-derived-domain').innerText(), /Outside training domain/);
  const card = page.locator('#enhance-series-jobs .enhance-job[data-state="Success"]');
  await card.waitFor();
  assert.equal(await card.locator('.enhance-domain-warning .enhance-domain-text').innerText(), warning);
  await shot('source-outside-domain');
});

test('metrics of a series on another grid show the reason they are refused', async () => {
  await openExplorer(`#series?uuid=${SUPERRES}`);
  const banner = page.locator('#enhance-derived-banner');
  await banner.locator('h2').waitFor();
  assert.match(await banner.innerText(), /Task: Super-resolution \(superres\)/);
  await page.locator('#enhance-evaluate').click();
  const message = page.locator('#enhance-metrics .enhance-error-message');
  await message.waitFor();
  const expected = await api('POST', '/enhance/evaluate', { Reference: SOURCE, Test: SUPERRES });
  assert.equal(expected.status, 400);
  assert.equal(await message.innerText(), expected.body.Message);
  await shotDown('superres-metrics-refused', banner);
});

test('an error of the API is shown with its message', async () => {
  await openExplorer(`#series?uuid=${DOOMED}`);
  const menu = page.locator('#enhance-menu');
  await menu.waitFor();
  await menu.locator('.ui-collapsible-heading').click();
  // The series goes away while its page is open (another user deleted it).
  const deleted = await context.request.delete(`/series/${DOOMED}`);
  assert.equal(deleted.status(), 200);
  await menu.locator('a.enhance-start[data-model="classical-bilateral"]').click();
  const message = page.locator('#enhance-series-messages .enhance-error-message');
  await message.waitFor();
  assert.equal(await message.innerText(), `series ${DOOMED} does not exist`);
});

test('every series of a study is enhanced with one action', { timeout: 240000 }, async () => {
  await openExplorer(`#study?uuid=${STUDY}`);
  const box = page.locator('#enhance-study');
  await box.waitFor();
  await page.locator('#enhance-study-task').selectOption('denoise', { force: true });
  await page.locator('#enhance-study-start').click();
  const summary = page.locator('#enhance-study-summary .enhance-summary');
  const refused = page.locator('#enhance-study-summary .enhance-error');
  await summary.or(refused).waitFor();
  assert.equal(await refused.count(), 0, await refused.allInnerTexts().then((t) => t.join()));
  // The source (already denoised) and the late phase are submitted; the two AI-derived
  // series and the report are skipped, with the reason.
  assert.equal(await summary.innerText(), 'Denoising: 2 jobs submitted, 3 series skipped');
  const skipped = await page.locator('#enhance-study-summary .enhance-skipped').innerText();
  assert.equal((skipped.match(/produced by Orthanc Enhance/g) || []).length, 2, skipped);
  assert.match(skipped, /Radiology report \(series 90\)\s+no model performs denoise for SR/);
  const cards = page.locator('#enhance-study-summary .enhance-job');
  assert.equal(await cards.count(), 2);
  await page.waitForFunction(
    () => document.querySelectorAll('#enhance-study-summary .enhance-job[data-state="Success"]')
      .length === 2, null, { timeout: JOB_TIMEOUT_MS });
  assert.match(await cards.allInnerTexts().then((t) => t.join('\n')), /Phantom CT, late phase/);
  await shotDown('study', box);
});

test('the status view can be bookmarked and shows the work done', async () => {
  await openExplorer('#enhance-status');
  const counters = page.locator('#enhance-status-counters');
  await counters.waitFor();
  const system = (await api('GET', '/enhance/system')).body;
  assert.ok(system.Jobs.Succeeded >= 4, JSON.stringify(system.Jobs));
  assert.match(await counters.innerText(), new RegExp(`Jobs succeeded\\s+${system.Jobs.Succeeded}`));
  await page.locator('#enhance-status-idle').waitFor();
  await shot('status-after');
});

test('no script error in any page', () => {
  assert.deepEqual(pageErrors, []);
});
