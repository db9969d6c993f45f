// SPDX-License-Identifier: GPL-3.0-or-later
//
// The browser half of compare_view_benchmark.py: opens the compare view and times slice
// changes. Prints one line of JSON with the figures.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.cwd(), 'package.json'));
const { chromium } = require('playwright-core');

const env = process.env;
const steps = Number(env.ENHANCE_STEPS || 200);

function summary(times) {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1)))];
  return { count: times.length, median: at(0.5), p90: at(0.9), max: sorted[sorted.length - 1] };
}

const browser = await chromium.launch({
  executablePath: env.ENHANCE_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
});
try {
  const page = await (await browser.newContext({ baseURL: env.ENHANCE_URL,
                                                 viewport: { width: 1280, height: 860 } })).newPage();
  page.setDefaultTimeout(120000);
  await page.goto(`/app/explorer.html#enhance-compare?source=${env.ENHANCE_SOURCE_SERIES}` +
                  `&derived=${env.ENHANCE_DERIVED_SERIES}`);
  await page.waitForFunction(() => document.querySelector('#enhance-compare-view')?.getAttribute('data-rendered'));
  await page.evaluate(() => {
    window.longTasks = [];
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) window.longTasks.push(entry.duration);
    }).observe({ entryTypes: ['longtask'] });
  });
  const slices = await page.evaluate(() => Number(document.querySelector('.enhance-compare-slider').max) + 1);

  // In the page, so that only the view's own time counts: goes to each slice of `targets`
  // the way a user would (the down-arrow key for the next slice, else the slider) and times
  // it from the event to the next frame after both panes show it.
  async function run(targets) {
    return page.evaluate(async (list) => {
      const view = document.querySelector('#enhance-compare-view');
      const slider = document.querySelector('.enhance-compare-slider');
      const shown = (k) => new Promise((resolve) => {
        if (view.getAttribute('data-rendered') === String(k)) return resolve();
        const observer = new MutationObserver(() => {
          if (view.getAttribute('data-rendered') === String(k)) {
            observer.disconnect();
            resolve();
          }
        });
        observer.observe(view, { attributes: true, attributeFilter: ['data-rendered'] });
      });
      const times = [];
      for (const k of list) {
        const start = performance.now();
        if (k === Number(slider.value) + 1) {
          document.dispatchEvent(new KeyboardEvent('keydown', { keyCode: 40, which: 40, bubbles: true }));
        } else {
          slider.value = String(k);
          slider.dispatchEvent(new Event('input', { bubbles: true }));
        }
        await shown(k);
        await new Promise((resolve) => requestAnimationFrame(() => resolve()));
        times.push(performance.now() - start);
      }
      return times;
    }, targets);
  }

  const last = Math.min(steps, slices - 1);
  await run([0]);
  const range = (from, to) => Array.from({ length: Math.abs(to - from) + 1 },
                                         (_, i) => (from <= to ? from + i : from - i));
  const sequential = await run(range(1, last));
  const cached = await run(range(last - 1, 0));
  const far = [];
  for (let k = slices - 1; k > last + 20 && far.length < 20; k -= 17) far.push(k);
  const jumps = [];
  for (const k of far) {
    // A pause between jumps, as a user would look at each slice: what was fetched ahead
    // of the previous one has arrived.
    await page.waitForTimeout(500);
    jumps.push(...await run([k]));
  }
  const longTasks = await page.evaluate(() => window.longTasks);
  console.log(JSON.stringify({
    sequential: summary(sequential), cached: summary(cached), jumps: summary(jumps),
    longTasks: { count: longTasks.length, max: longTasks.length ? Math.max(...longTasks) : 0 },
  }));
} finally {
  await browser.close();
}
