// SPDX-License-Identifier: GPL-3.0-or-later
//
// Orthanc Enhance in Orthanc Explorer: the side-by-side view of a source series and a series
// derived from it (#enhance-compare?source=ID&derived=ID).
//
// Both series are shown slice by slice, matched by their position along the slice normal
// and, in the plane, by patient coordinates: a super-resolved series (more slices, a finer
// matrix) or a synthetic CT lines up with its source. Values are in physical units (HU for
// CT): each stored value times the instance's Rescale Slope plus its Rescale Intercept.
// Uncompressed pixel data is read as it is stored (/instances/{id}/frames/0/raw, no work
// for Orthanc) and rescaled here; other transfer syntaxes are decoded by Orthanc
// (/instances/{id}/numpy?rescale=1). Slices are fetched as they are needed, the ones around
// the current slice ahead of time, and kept in a cache bounded in bytes; drawing one slice
// is a single pass over its pixels, so the page stays responsive on 512-slice series.
//
// Like the rest of the extension: ES5, jQuery from Explorer, nothing loaded from elsewhere.
(function ($) {
  'use strict';

  var PAGE = 'enhance-compare';
  var CANVAS = 400;                       // CSS pixels of each pane
  var CACHE_BYTES = 384 * 1024 * 1024;    // decoded slices kept, both series together
  var AHEAD = 8;                          // slices fetched ahead on each side
  var PARALLEL = 4;                       // requests in flight
  var CT_PRESETS = [
    {name: 'Soft tissue', center: 40, width: 400},
    {name: 'Lung', center: -600, width: 1500},
    {name: 'Bone', center: 400, width: 1800},
    {name: 'Brain', center: 40, width: 80}
  ];

  // --- Geometry ----------------------------------------------------------------------------

  function numbers(value) {
    return String(value || '').split('\\').map(Number);
  }

  function dot(a, b) {
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  }

  function cross(a, b) {
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  }

  // The warning of a series made outside its model's domain (ImageComments, or the start of
  // DerivationDescription, as enhance-explorer.js reads them), or ''.
  function domainWarning(tags) {
    var comments = String(tags.ImageComments || '');
    if (/^WARNING: outside the domain/.test(comments)) return comments;
    var m = /^(WARNING: [^;]*);/.exec(String(tags.DerivationDescription || ''));
    return m ? m[1] : '';
  }

  // One series as the view needs it, from /series/{id}/instances-tags?simplify: its slices
  // sorted along the normal, each with its position, and the in-plane grid.
  function describeSeries(id, tagsById) {
    var slices = [];
    var first = null;
    $.each(tagsById, function (instanceId, tags) {
      if (!first) first = tags;
      slices.push({
        id: instanceId,
        number: Number(tags.InstanceNumber) || 0,
        position: numbers(tags.ImagePositionPatient),
        slope: tags.RescaleSlope !== undefined ? Number(tags.RescaleSlope) : 1,
        intercept: tags.RescaleIntercept !== undefined ? Number(tags.RescaleIntercept) : 0
      });
    });
    if (!first) throw new Error('series ' + id + ' has no instances');
    var orientation = numbers(first.ImageOrientationPatient);
    var spacing = numbers(first.PixelSpacing);
    var series = {
      id: id,
      modality: first.Modality || '',
      description: first.SeriesDescription || '',
      rows: Number(first.Rows),
      columns: Number(first.Columns),
      rowDirection: orientation.length === 6 ? orientation.slice(0, 3) : [1, 0, 0],
      columnDirection: orientation.length === 6 ? orientation.slice(3, 6) : [0, 1, 0],
      // PixelSpacing is (between rows, between columns).
      rowSpacing: spacing.length === 2 && spacing[0] > 0 ? spacing[0] : 1,
      columnSpacing: spacing.length === 2 && spacing[1] > 0 ? spacing[1] : 1,
      bitsAllocated: Number(first.BitsAllocated) || 16,
      bitsStored: Number(first.BitsStored) || Number(first.BitsAllocated) || 16,
      signed: Number(first.PixelRepresentation) === 1,
      highBit: first.HighBit !== undefined ? Number(first.HighBit)
                                           : (Number(first.BitsStored) || Number(first.BitsAllocated) || 16) - 1,
      samples: Number(first.SamplesPerPixel) || 1,
      raw: false,  // set when its pixel data is stored uncompressed (see open())
      windowCenter: numbers(first.WindowCenter)[0],
      windowWidth: numbers(first.WindowWidth)[0],
      warning: domainWarning(first),
      slices: slices
    };
    series.normal = cross(series.rowDirection, series.columnDirection);
    series.units = series.modality === 'CT' ? 'HU' : '';
    var positioned = slices.every(function (s) { return s.position.length === 3; });
    $.each(slices, function (k, s) {
      s.z = positioned ? dot(s.position, series.normal) : s.number;
      if (s.position.length !== 3) s.position = [0, 0, s.number];
    });
    slices.sort(function (a, b) { return a.z - b.z; });
    return series;
  }

  function sameOrientation(a, b) {
    return Math.abs(dot(a.rowDirection, b.rowDirection) - 1) < 1e-3 &&
           Math.abs(dot(a.columnDirection, b.columnDirection) - 1) < 1e-3;
  }

  // The slice of `series` nearest to position z along the normal, or -1 when none is
  // within half a slice spacing (or 1 mm for a single slice).
  function nearestSlice(series, z) {
    var slices = series.slices;
    var best = -1;
    var distance = Infinity;
    for (var k = 0; k < slices.length; k += 1) {
      var d = Math.abs(slices[k].z - z);
      if (d < distance) {
        distance = d;
        best = k;
      }
    }
    var spacing = slices.length > 1 ? Math.abs(slices[slices.length - 1].z - slices[0].z) /
                                      (slices.length - 1) : 2;
    return distance <= spacing / 2 + 1e-3 ? best : -1;
  }

  // In-plane position (u, v) in mm of a slice's first pixel, in the frame of `reference`:
  // u along its rows, v along its columns, from the reference's first slice.
  function planeOffset(reference, slice) {
    var origin = reference.slices[0].position;
    var d = [slice.position[0] - origin[0], slice.position[1] - origin[1], slice.position[2] - origin[2]];
    return {u: dot(d, reference.rowDirection), v: dot(d, reference.columnDirection)};
  }

  // --- Pixels ----------------------------------------------------------------------------------

  // Fetches and decodes slices. It runs in a Web Worker, so that neither the transfer nor
  // the conversion of a slice holds the page's main thread; a browser without workers runs
  // it on the main thread. `scope` is the worker's global object (or a stand-in): it gets
  // {id, raw, npy, headers, layout} messages and posts {id, values} or {id, error}.
  function pixelDecoder(scope) {
    // A NumPy .npy file (version 1 or 2) as a Float32Array.
    function parseNpy(buffer) {
      var bytes = new Uint8Array(buffer);
      if (bytes[0] !== 0x93 || String.fromCharCode.apply(null, bytes.subarray(1, 6)) !== 'NUMPY') {
        throw new Error('not a NumPy file');
      }
      var major = bytes[6];
      var view = new DataView(buffer);
      var headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
      var start = (major === 1 ? 10 : 12) + headerLength;
      var header = String.fromCharCode.apply(null, bytes.subarray(major === 1 ? 10 : 12, start));
      var descr = /'descr':\s*'([^']+)'/.exec(header)[1];
      var shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').filter(function (x) {
        return x.trim() !== '';
      }).map(Number);
      var count = shape.reduce(function (x, y) { return x * y; }, 1);
      var kinds = {'<f4': Float32Array, '<f8': Float64Array, '<i2': Int16Array, '<u2': Uint16Array,
                   '<i4': Int32Array, '<u4': Uint32Array, '|u1': Uint8Array, '|i1': Int8Array};
      var Kind = kinds[descr];
      if (!Kind) throw new Error('unsupported NumPy type ' + descr);
      var raw = new Kind(buffer.slice(start, start + count * Kind.BYTES_PER_ELEMENT));
      return Kind === Float32Array ? raw : new Float32Array(raw);
    }

    // Uncompressed little-endian pixel data of one frame as physical values: stored bits
    // extracted (sign-extended when signed), then slope and intercept. Null when the bytes
    // are not what the tags announce.
    function rawToValues(buffer, l) {
      var count = l.rows * l.columns;
      var bytes = l.bitsAllocated / 8;
      if (l.samples !== 1 || (bytes !== 1 && bytes !== 2) || buffer.byteLength < count * bytes ||
          l.bitsStored > l.bitsAllocated || l.highBit !== l.bitsStored - 1) {
        return null;
      }
      var stored = bytes === 2 ? new Uint16Array(buffer, 0, count) : new Uint8Array(buffer, 0, count);
      var mask = (1 << l.bitsStored) - 1;
      var sign = 1 << (l.bitsStored - 1);
      var values = new Float32Array(count);
      for (var i = 0; i < count; i += 1) {
        var v = stored[i] & mask;
        if (l.signed && (v & sign)) v -= 1 << l.bitsStored;
        values[i] = v * l.slope + l.intercept;
      }
      return values;
    }

    function get(url, headers, done, fail) {
      var xhr = new XMLHttpRequest();
      xhr.open('GET', url, true);
      xhr.responseType = 'arraybuffer';
      for (var name in headers) {
        if (Object.prototype.hasOwnProperty.call(headers, name)) xhr.setRequestHeader(name, headers[name]);
      }
      xhr.onload = function () {
        if (xhr.status === 200) done(xhr.response);
        else fail('HTTP ' + xhr.status + ' for ' + url);
      };
      xhr.onerror = function () { fail('Orthanc did not answer ' + url); };
      xhr.send();
    }

    scope.onmessage = function (event) {
      var job = event.data;
      function answer(values) { scope.postMessage({id: job.id, values: values}, [values.buffer]); }
      function failed(message) { scope.postMessage({id: job.id, error: message}); }
      // Pixel data Orthanc decodes (compressed transfer syntaxes), rescaled by Orthanc.
      function decodedByOrthanc() {
        get(job.npy, job.headers, function (buffer) {
          try {
            answer(parseNpy(buffer));
          } catch (e) {
            failed(e.message);
          }
        }, failed);
      }
      if (!job.raw) {
        decodedByOrthanc();
        return;
      }
      get(job.raw, job.headers, function (buffer) {
        var values = rawToValues(buffer, job.layout);
        if (values) answer(values);
        else decodedByOrthanc();
      }, decodedByOrthanc);
    };
  }

  // Starts the decoder; `onResult` gets its answers. Returns the function that sends it a job.
  function startDecoder(onResult) {
    try {
      var url = URL.createObjectURL(new Blob(['(' + pixelDecoder.toString() + ')(self);'],
                                             {type: 'text/javascript'}));
      var worker = new Worker(url);
      worker.onmessage = function (event) { onResult(event.data); };
      return function (job) { worker.postMessage(job); };
    } catch (e) {
      var scope = {postMessage: function (message) {
        setTimeout(function () { onResult(message); }, 0);
      }};
      pixelDecoder(scope);
      return function (job) { scope.onmessage({data: job}); };
    }
  }

  // Decoded slices of both series, least recently used dropped first beyond CACHE_BYTES.
  // Loads are queued, the most wanted first, at most PARALLEL in flight.
  // `locate(instanceId)` gives {series, slice} for an instance of either series.
  function SliceCache(locate, onLoaded) {
    var cache = this;
    this.locate = locate;
    this.entries = {};
    this.order = [];
    this.bytes = 0;
    this.pending = {};
    this.queue = [];
    this.inFlight = 0;
    this.onLoaded = onLoaded;
    this.send = startDecoder(function (result) { cache.received(result); });
  }

  SliceCache.prototype.get = function (instanceId) {
    var entry = this.entries[instanceId];
    if (!entry) return null;
    this.order.splice(this.order.indexOf(instanceId), 1);
    this.order.push(instanceId);
    return entry;
  };

  SliceCache.prototype.put = function (instanceId, entry) {
    this.entries[instanceId] = entry;
    this.order.push(instanceId);
    this.bytes += entry.values.byteLength;
    while (this.bytes > CACHE_BYTES && this.order.length > 1) {
      var old = this.order.shift();
      this.bytes -= this.entries[old].values.byteLength;
      delete this.entries[old];
    }
  };

  // Replaces the queue: `wanted` in order of need; loads already running go on.
  SliceCache.prototype.want = function (wanted) {
    var cache = this;
    cache.queue = wanted.filter(function (id) { return !cache.entries[id] && !cache.pending[id]; });
    cache.pump();
  };

  SliceCache.prototype.pump = function () {
    while (this.inFlight < PARALLEL && this.queue.length) {
      var id = this.queue.shift();
      if (this.entries[id] || this.pending[id]) continue;
      this.pending[id] = true;
      this.inFlight += 1;
      this.load(id);
    }
  };

  // Absolute addresses: the worker's own address is a blob.
  function absolute(path) {
    return new URL('..' + path, window.location.href).href;
  }

  SliceCache.prototype.load = function (instanceId) {
    var where = this.locate(instanceId);
    var series = where.series;
    this.send({
      id: instanceId,
      raw: series.raw ? absolute('/instances/' + instanceId + '/frames/0/raw') : null,
      npy: absolute('/instances/' + instanceId + '/numpy?rescale=1'),
      // The session's own credentials go with every request: the browser's HTTP
      // authentication, and the headers Explorer sets with $.ajaxSetup (authorization
      // plugin tokens).
      headers: ($.ajaxSettings && $.ajaxSettings.headers) || {},
      layout: {rows: series.rows, columns: series.columns, bitsAllocated: series.bitsAllocated,
               bitsStored: series.bitsStored, highBit: series.highBit, signed: series.signed,
               samples: series.samples, slope: where.slice.slope, intercept: where.slice.intercept}
    });
  };

  SliceCache.prototype.received = function (result) {
    delete this.pending[result.id];
    this.inFlight -= 1;
    if (result.values) this.put(result.id, {values: result.values});
    this.onLoaded(result.id, result.error ? 'instance ' + result.id + ': ' + result.error : null);
    this.pump();
  };

  // --- The view ------------------------------------------------------------------------------

  // Greys of `values` (rows x columns) through a window, into an offscreen canvas. Its
  // pixel buffer is kept from one slice to the next: a new one per slice would leave the
  // garbage collector megabytes to reclaim at every scroll step.
  function renderGreys(values, rows, columns, low, high, target) {
    var context = target.getContext('2d');
    if (target.width !== columns || target.height !== rows || !target.greys) {
      target.width = columns;
      target.height = rows;
      target.greys = context.createImageData(columns, rows);
    }
    var image = target.greys;
    var data = image.data;
    var scale = 255 / Math.max(high - low, 1e-6);
    for (var i = 0, j = 0; i < values.length; i += 1, j += 4) {
      var g = (values[i] - low) * scale;
      g = g < 0 ? 0 : g > 255 ? 255 : g;
      data[j] = data[j + 1] = data[j + 2] = g;
      data[j + 3] = 255;
    }
    context.putImageData(image, 0, 0);
  }

  // `uncertainty`: the uncertainty series that goes with the derived series, or null.
  function Viewer(root, source, derived, uncertainty) {
    this.root = root;
    this.source = source;
    this.derived = derived;
    this.uncertainty = uncertainty;
    this.index = 0;  // slice of the derived series shown
    this.showDifference = false;
    this.showUncertainty = false;
    var bySeries = {};
    $.each(uncertainty ? [source, derived, uncertainty] : [source, derived], function (i, series) {
      $.each(series.slices, function (k, slice) { bySeries[slice.id] = {series: series, slice: slice}; });
    });
    this.cache = new SliceCache(function (id) { return bySeries[id]; }, $.proxy(this.loaded, this));
    this.offscreen = [document.createElement('canvas'), document.createElement('canvas'),
                      document.createElement('canvas'), document.createElement('canvas')];
    this.setWindow(this.defaultWindow());
    this.fit();
  }

  // CT: the soft-tissue window. Otherwise (MR) automatic: from the values of the first
  // slice shown (Viewer.automaticWindow).
  Viewer.prototype.defaultWindow = function () {
    if (this.source.modality === 'CT' || this.derived.units === 'HU') return CT_PRESETS[0];
    return null;
  };

  Viewer.prototype.setWindow = function (preset) {
    this.window = preset ? {center: preset.center, width: Math.max(1, preset.width)} : null;
  };

  // The source series' field of view fills a pane.
  Viewer.prototype.fit = function () {
    var s = this.source;
    var width = s.columns * s.columnSpacing;
    var height = s.rows * s.rowSpacing;
    this.mmPerPixel = Math.max(width, height) / CANVAS;
    this.center = {u: width / 2 - s.columnSpacing / 2, v: height / 2 - s.rowSpacing / 2};
  };

  Viewer.prototype.zoom = function (factor, atU, atV) {
    var u = atU === undefined ? this.center.u : atU;
    var v = atV === undefined ? this.center.v : atV;
    this.center.u = u + (this.center.u - u) / factor;
    this.center.v = v + (this.center.v - v) / factor;
    this.mmPerPixel /= factor;
  };

  // Canvas pixel (x, y) to in-plane millimetres in the source's frame.
  Viewer.prototype.toPlane = function (x, y) {
    return {u: this.center.u + (x - CANVAS / 2) * this.mmPerPixel,
            v: this.center.v + (y - CANVAS / 2) * this.mmPerPixel};
  };

  // The slices shown now: the derived slice and the source slice at its position.
  Viewer.prototype.current = function () {
    var derivedSlice = this.derived.slices[this.index];
    var sourceIndex = nearestSlice(this.source, derivedSlice.z);
    var spreadIndex = this.uncertainty ? nearestSlice(this.uncertainty, derivedSlice.z) : -1;
    return {
      derived: derivedSlice,
      sourceIndex: sourceIndex,
      source: sourceIndex >= 0 ? this.source.slices[sourceIndex] : null,
      spreadIndex: spreadIndex,
      spread: spreadIndex >= 0 ? this.uncertainty.slices[spreadIndex] : null
    };
  };

  // The value of `series`' slice at in-plane position (u, v), with its pixel, or null.
  Viewer.prototype.sample = function (series, slice, values, u, v) {
    var offset = planeOffset(this.source, slice);
    var column = Math.round((u - offset.u) / series.columnSpacing);
    var row = Math.round((v - offset.v) / series.rowSpacing);
    if (row < 0 || column < 0 || row >= series.rows || column >= series.columns) return null;
    return {row: row, column: column, value: values[row * series.columns + column]};
  };

  Viewer.prototype.go = function (index) {
    var n = this.derived.slices.length;
    this.index = Math.max(0, Math.min(n - 1, index));
    this.root.find('.enhance-compare-slider').val(this.index);
    this.draw();
    this.prefetch();
  };

  Viewer.prototype.prefetch = function () {
    var wanted = [];
    var here = this.current();
    wanted.push(here.derived.id);
    if (here.source) wanted.push(here.source.id);
    if (here.spread && this.showUncertainty) wanted.push(here.spread.id);
    for (var d = 1; d <= AHEAD; d += 1) {
      var candidates = [this.index + d, this.index - d];
      for (var c = 0; c < candidates.length; c += 1) {
        var k = candidates[c];
        if (k < 0 || k >= this.derived.slices.length) continue;
        var slice = this.derived.slices[k];
        wanted.push(slice.id);
        var s = nearestSlice(this.source, slice.z);
        if (s >= 0) wanted.push(this.source.slices[s].id);
      }
    }
    this.cache.want(wanted);
  };

  Viewer.prototype.loaded = function (instanceId, error) {
    if (error) {
      this.root.find('.enhance-compare-messages').empty()
        .append($('<div>').addClass('enhance-error').attr('role', 'alert').text('Cannot load ' + error));
    }
    var here = this.current();
    if (instanceId === here.derived.id || (here.source && instanceId === here.source.id) ||
        (here.spread && instanceId === here.spread.id)) {
      this.draw();
    }
  };

  // A window from the values of a slice: the 1st to 99th percentile of the voxels in the
  // body (above 5% of the bright end), so that the background and a few very bright voxels
  // do not set the contrast.
  Viewer.prototype.automaticWindow = function (values) {
    var sample = [];
    var step = Math.max(1, Math.floor(values.length / 20000));
    for (var i = 0; i < values.length; i += step) sample.push(values[i]);
    sample.sort(function (a, b) { return a - b; });
    var bright = sample[Math.floor(0.995 * (sample.length - 1))];
    var floor = sample[0] + 0.05 * (bright - sample[0]);
    var body = sample.filter(function (v) { return v > floor; });
    if (body.length < 100) body = sample;
    var low = body[Math.floor(0.01 * (body.length - 1))];
    var high = body[Math.floor(0.99 * (body.length - 1))];
    this.window = {center: (low + high) / 2, width: Math.max(high - low, 1)};
  };

  Viewer.prototype.paint = function (pane, series, slice, offscreen) {
    var canvas = pane.find('canvas')[0];
    var context = canvas.getContext('2d');
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.fillStyle = '#000';
    context.fillRect(0, 0, canvas.width, canvas.height);
    if (!slice) return;
    var offset = planeOffset(this.source, slice);
    var mm = this.mmPerPixel;
    context.imageSmoothingEnabled = false;
    // Pixel centres at (offset + index * spacing): each pixel covers half a spacing around.
    context.drawImage(offscreen,
                      (offset.u - series.columnSpacing / 2 - this.center.u) / mm + CANVAS / 2,
                      (offset.v - series.rowSpacing / 2 - this.center.v) / mm + CANVAS / 2,
                      series.columns * series.columnSpacing / mm, series.rows * series.rowSpacing / mm);
  };

  Viewer.prototype.label = function (pane, series, slice, index, loaded) {
    var text = index < 0 ? 'no slice of this series at this position'
      : 'slice ' + (index + 1) + ' of ' + series.slices.length + ', position ' + slice.z.toFixed(1) +
        ' mm' + (loaded ? '' : ' (loading...)');
    pane.find('.enhance-compare-slice').text(text);
    pane.attr({'data-slice': index, 'data-instance': slice && index >= 0 ? slice.id : '',
               'data-loaded': loaded ? 'true' : 'false'});
  };

  Viewer.prototype.draw = function () {
    var here = this.current();
    var derivedEntry = this.cache.get(here.derived.id);
    var sourceEntry = here.source ? this.cache.get(here.source.id) : null;
    if (!this.window && (sourceEntry || derivedEntry)) {
      this.automaticWindow((sourceEntry || derivedEntry).values);
    }
    var panes = this.root.find('.enhance-compare-pane');
    var sourcePane = panes.eq(0), derivedPane = panes.eq(1), differencePane = panes.eq(2);
    this.drawUncertainty(here, panes.eq(3));
    this.label(sourcePane, this.source, here.source, here.sourceIndex, !!sourceEntry);
    this.label(derivedPane, this.derived, here.derived, this.index, !!derivedEntry);
    differencePane.toggle(this.showDifference);
    if (this.window) {
      var low = this.window.center - this.window.width / 2;
      var high = this.window.center + this.window.width / 2;
      this.root.find('.enhance-compare-window').text(
        'Window ' + Math.round(this.window.width) + ' / level ' + Math.round(this.window.center) +
        (this.derived.units ? ' ' + this.derived.units : ''));
      if (sourceEntry) {
        renderGreys(sourceEntry.values, this.source.rows, this.source.columns, low, high, this.offscreen[0]);
      }
      if (derivedEntry) {
        renderGreys(derivedEntry.values, this.derived.rows, this.derived.columns, low, high, this.offscreen[1]);
      }
    }
    this.paint(sourcePane, this.source, sourceEntry && this.window ? here.source : null, this.offscreen[0]);
    this.paint(derivedPane, this.derived, derivedEntry && this.window ? here.derived : null, this.offscreen[1]);
    if (this.showDifference) {
      var ready = sourceEntry && derivedEntry && this.window;
      if (ready) this.renderDifference(here, sourceEntry.values, derivedEntry.values);
      this.label(differencePane, this.derived, here.derived, this.index, !!ready);
      this.paint(differencePane, this.derived, ready ? here.derived : null, this.offscreen[2]);
    }
    this.root.attr('data-rendered', sourceEntry && derivedEntry ? String(this.index) : '');
    if (this.pointer) this.readout(this.pointer.x, this.pointer.y);
  };

  // The uncertainty series' slice at the derived slice's position, in a grey window from 0
  // to the series' own window width (the 99th percentile inside the body).
  Viewer.prototype.drawUncertainty = function (here, pane) {
    pane.toggle(this.showUncertainty);
    if (!this.showUncertainty || !this.uncertainty) return;
    var entry = here.spread ? this.cache.get(here.spread.id) : null;
    this.label(pane, this.uncertainty, here.spread, here.spreadIndex, !!entry);
    var u = this.uncertainty;
    var width = u.windowWidth > 0 ? u.windowWidth : 1;
    if (entry) renderGreys(entry.values, u.rows, u.columns, 0, width, this.offscreen[3]);
    this.paint(pane, u, entry ? here.spread : null, this.offscreen[3]);
    pane.find('.enhance-compare-uncertainty-window').text(
      'Standard deviation across samples, 0 to ' + width.toFixed(1) + (u.units ? ' ' + u.units : ''));
  };

  // Derived minus source on the derived grid, the source sampled at the nearest pixel, in a
  // window symmetric around 0 of a quarter of the current window's width.
  Viewer.prototype.renderDifference = function (here, sourceValues, derivedValues) {
    var d = this.derived;
    var s = this.source;
    var derivedOffset = planeOffset(s, here.derived);
    var sourceOffset = planeOffset(s, here.source);
    var difference = new Float32Array(d.rows * d.columns);
    var columnMap = new Int32Array(d.columns);
    for (var c = 0; c < d.columns; c += 1) {
      columnMap[c] = Math.round((derivedOffset.u + c * d.columnSpacing - sourceOffset.u) / s.columnSpacing);
    }
    for (var r = 0; r < d.rows; r += 1) {
      var sr = Math.round((derivedOffset.v + r * d.rowSpacing - sourceOffset.v) / s.rowSpacing);
      for (c = 0; c < d.columns; c += 1) {
        var sc = columnMap[c];
        var i = r * d.columns + c;
        difference[i] = sr < 0 || sc < 0 || sr >= s.rows || sc >= s.columns
          ? 0 : derivedValues[i] - sourceValues[sr * s.columns + sc];
      }
    }
    this.difference = difference;
    var half = this.window.width / 8;
    this.root.find('.enhance-compare-difference-window').text(
      'Difference window: -' + half.toFixed(0) + ' to +' + half.toFixed(0) + (d.units ? ' ' + d.units : ''));
    renderGreys(difference, d.rows, d.columns, -half, half, this.offscreen[2]);
  };

  // Values under the cursor in both series (and their difference), in physical units.
  Viewer.prototype.readout = function (x, y) {
    this.pointer = {x: x, y: y};
    var here = this.current();
    var plane = this.toPlane(x, y);
    var units = this.derived.units ? ' ' + this.derived.units : '';
    var viewer = this;
    function show(element, series, slice, name) {
      var entry = slice ? viewer.cache.get(slice.id) : null;
      var hit = entry ? viewer.sample(series, slice, entry.values, plane.u, plane.v) : null;
      element.attr({'data-instance': hit ? slice.id : '', 'data-row': hit ? hit.row : '',
                    'data-column': hit ? hit.column : '', 'data-value': hit ? hit.value : ''});
      element.text(name + ': ' + (hit ? hit.value.toFixed(1) + units + ' (row ' + hit.row +
                                   ', column ' + hit.column + ')' : '-'));
      return hit;
    }
    var box = this.root.find('.enhance-compare-readout');
    var a = show(box.find('.enhance-compare-value-source'), this.source, here.source, 'Source');
    var b = show(box.find('.enhance-compare-value-derived'), this.derived, here.derived, 'Derived');
    box.find('.enhance-compare-value-difference').text(
      'Derived - source: ' + (a && b ? (b.value - a.value).toFixed(1) + units : '-'));
    if (this.uncertainty && this.showUncertainty) {
      show(box.find('.enhance-compare-value-uncertainty'), this.uncertainty, here.spread,
           'Uncertainty (SD)');
    }
  };

  Viewer.prototype.leave = function () {
    this.pointer = null;
    this.root.find('.enhance-compare-readout span').text('').removeAttr('data-value');
  };

  // --- Page and controls -------------------------------------------------------------------

  function ensurePage() {
    if ($('#' + PAGE).length) return;
    var header = $('<div>').attr('data-role', 'header')
      .append($('<h1>').text('Compare source and AI-derived series'))
      .append($('<a>').attr({href: '#', id: 'enhance-compare-back', 'data-icon': 'arrow-l',
                             'data-direction': 'reverse', 'data-ajax': 'false'}).addClass('ui-btn-left')
        .text('Derived series'));
    var page = $('<div>').attr({'data-role': 'page', id: PAGE, 'data-url': PAGE})
      .append(header)
      .append($('<div>').attr('data-role', 'content').append($('<div>').attr('id', 'enhance-compare-view')));
    ($.mobile.pageContainer || $('body')).append(page);
  }

  function installStyle() {
    $('head').append($('<style>').attr('id', 'enhance-compare-style').text([
      '#enhance-compare-view{text-shadow:none}',
      '.enhance-compare-panes{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}',
      '.enhance-compare-pane{width:' + CANVAS + 'px}',
      '.enhance-compare-pane h3{margin:0 0 4px 0;font-size:1em;white-space:nowrap;overflow:hidden;',
      'text-overflow:ellipsis}',
      '.enhance-compare-pane canvas{display:block;background:#000;cursor:crosshair;',
      'width:' + CANVAS + 'px;height:' + CANVAS + 'px}',
      '.enhance-compare-slice{font-size:.85em;color:#333;margin:3px 0}',
      '.enhance-compare-controls{display:flex;flex-wrap:wrap;align-items:center;gap:6px}',
      '.enhance-compare-controls button{padding:4px 10px}',
      '.enhance-compare-slider{width:' + (2 * CANVAS + 12) + 'px}',
      '.enhance-compare-readout{font-family:monospace;margin:6px 0}',
      '.enhance-compare-readout span{display:inline-block;min-width:300px}',
      '.enhance-compare-warning{background:#fff3cd;border:2px solid #b35c00;border-radius:6px;',
      'padding:6px 10px;margin:6px 0}'
    ].join('')));
  }

  function pane(title, kind) {
    var canvas = $('<canvas>').attr({width: CANVAS, height: CANVAS});
    return $('<div>').addClass('enhance-compare-pane enhance-compare-' + kind)
      .append($('<h3>').text(title)).append(canvas)
      .append($('<p>').addClass('enhance-compare-slice'));
  }

  function button(text, cls) {
    return $('<button>').attr({type: 'button', 'data-role': 'none'}).addClass(cls).text(text);
  }

  function drawControls(root, viewer) {
    var controls = $('<div>').addClass('enhance-compare-controls');
    var presets = viewer.source.modality === 'CT' ? CT_PRESETS : [];
    $.each(presets, function (i, preset) {
      controls.append(button(preset.name, 'enhance-compare-preset').attr('data-preset', preset.name)
        .click(function () {
          viewer.setWindow(preset);
          viewer.draw();
        }));
    });
    controls.append(button(presets.length ? 'Automatic' : 'Automatic window', 'enhance-compare-auto')
      .click(function () {
        viewer.window = null;
        viewer.draw();
      }));
    var own = viewer.source;
    if (own.windowWidth > 0) {
      controls.append(button('Window of the series', 'enhance-compare-series-window').click(function () {
        viewer.setWindow({center: own.windowCenter, width: own.windowWidth});
        viewer.draw();
      }));
    }
    controls.append(button('Zoom in', 'enhance-compare-zoom-in').click(function () {
      viewer.zoom(1.5);
      viewer.draw();
    }));
    controls.append(button('Zoom out', 'enhance-compare-zoom-out').click(function () {
      viewer.zoom(1 / 1.5);
      viewer.draw();
    }));
    controls.append(button('Fit', 'enhance-compare-fit').click(function () {
      viewer.fit();
      viewer.draw();
    }));
    controls.append(button('Difference', 'enhance-compare-toggle-difference').click(function () {
      viewer.showDifference = !viewer.showDifference;
      $(this).toggleClass('enhance-on', viewer.showDifference);
      viewer.draw();
    }));
    // Offered only where the derived series has an uncertainty series.
    if (viewer.uncertainty) {
      controls.append(button('Uncertainty', 'enhance-compare-toggle-uncertainty').click(function () {
        viewer.showUncertainty = !viewer.showUncertainty;
        $(this).toggleClass('enhance-on', viewer.showUncertainty);
        viewer.draw();
        viewer.prefetch();
      }));
    }
    controls.append($('<span>').addClass('enhance-compare-window'));
    return controls;
  }

  // Mouse: the wheel scrolls (with Ctrl, zooms at the cursor); dragging sets the window
  // (horizontally its width, vertically its level), with Shift or the middle or right
  // button it pans. Both panes move together.
  function bindMouse(root, viewer) {
    var drag = null;
    root.find('canvas').each(function () {
      var canvas = this;
      function at(event) {
        var box = canvas.getBoundingClientRect();
        return {x: (event.clientX - box.left) * CANVAS / box.width,
                y: (event.clientY - box.top) * CANVAS / box.height};
      }
      canvas.addEventListener('wheel', function (event) {
        event.preventDefault();
        if (event.ctrlKey) {
          var p = at(event);
          var plane = viewer.toPlane(p.x, p.y);
          viewer.zoom(event.deltaY < 0 ? 1.25 : 0.8, plane.u, plane.v);
          viewer.draw();
        } else {
          viewer.go(viewer.index + (event.deltaY > 0 ? 1 : -1));
        }
      }, {passive: false});
      canvas.addEventListener('contextmenu', function (event) { event.preventDefault(); });
      canvas.addEventListener('mousedown', function (event) {
        event.preventDefault();
        var p = at(event);
        drag = {x: p.x, y: p.y, pan: event.shiftKey || event.button !== 0,
                window: viewer.window ? {center: viewer.window.center, width: viewer.window.width} : null,
                center: {u: viewer.center.u, v: viewer.center.v}};
      });
      canvas.addEventListener('mousemove', function (event) {
        var p = at(event);
        if (drag) {
          var dx = p.x - drag.x, dy = p.y - drag.y;
          if (drag.pan) {
            viewer.center.u = drag.center.u - dx * viewer.mmPerPixel;
            viewer.center.v = drag.center.v - dy * viewer.mmPerPixel;
          } else if (drag.window) {
            var step = Math.max(drag.window.width / 200, 0.01);
            viewer.window = {center: drag.window.center + dy * step,
                             width: Math.max(1, drag.window.width + dx * step * 2)};
          }
          viewer.draw();
        }
        viewer.readout(p.x, p.y);
      });
      canvas.addEventListener('mouseleave', function () { viewer.leave(); });
    });
    $(document).bind('mouseup.enhanceCompare', function () { drag = null; });
  }

  function bindKeys(viewer) {
    $(document).unbind('keydown.enhanceCompare').bind('keydown.enhanceCompare', function (event) {
      if (!$.mobile.activePage || $.mobile.activePage.attr('id') !== PAGE) return;
      var steps = {38: -1, 40: 1, 33: -10, 34: 10, 36: -1e9, 35: 1e9};  // arrows, pages, home, end
      if (steps[event.which] === undefined) return;
      event.preventDefault();
      viewer.go(viewer.index + steps[event.which]);
    });
  }

  function build(root, source, derived, uncertainty) {
    root.empty();
    var viewer = new Viewer(root, source, derived, uncertainty);
    // Styled by enhance-explorer.js (.enhance-domain-warning), like the banner's.
    if (derived.warning) {
      root.append($('<div>').addClass('enhance-domain-warning enhance-compare-domain').attr('role', 'alert')
        .append($('<h3>').text((/outside the domain/.test(derived.warning)
          ? 'Outside the model\'s training domain' : 'Orthanc Enhance recorded a warning') +
          ' \u2014 do not trust the right-hand series without review'))
        .append($('<p>').addClass('enhance-domain-text').text(derived.warning)));
    }
    root.append($('<p>').addClass('enhance-compare-warning').text(
      'Right: ' + (derived.description || 'the derived series') + ', computed by Orthanc Enhance ' +
      '(AI-derived, not an acquired image). Left: the source series, as acquired.'));
    if (!sameOrientation(source, derived)) {
      root.append($('<div>').addClass('enhance-error').attr('role', 'alert').text(
        'The two series are not in the same orientation: they are shown slice by slice without ' +
        'matching their planes.'));
    }
    root.append(drawControls(root, viewer));
    root.append($('<div>').addClass('enhance-compare-panes')
      .append(pane('Source: ' + (source.description || source.id), 'source'))
      .append(pane('AI-derived: ' + (derived.description || derived.id), 'derived'))
      .append(pane('Difference: derived - source', 'difference').hide()
        .append($('<p>').addClass('enhance-compare-difference-window')))
      .append(pane('Uncertainty: where the samples disagree', 'uncertainty').hide()
        .append($('<p>').addClass('enhance-compare-uncertainty-window'))));
    root.append($('<input>').attr({type: 'range', min: 0, max: derived.slices.length - 1, value: 0,
                                   'data-role': 'none', 'aria-label': 'Slice'})
      .addClass('enhance-compare-slider')
      .bind('input change', function () { viewer.go(Number(this.value)); }));
    root.append($('<div>').addClass('enhance-compare-readout')
      .append($('<span>').addClass('enhance-compare-value-source'))
      .append($('<span>').addClass('enhance-compare-value-derived'))
      .append($('<span>').addClass('enhance-compare-value-difference'))
      .append($('<span>').addClass('enhance-compare-value-uncertainty')));
    root.append($('<p>').addClass('enhance-note').text(
      'Mouse wheel, arrow keys or the slider: next slice (both series, matched by position). ' +
      'Drag: window (left-right) and level (up-down). Shift-drag or right-drag: pan. ' +
      'Ctrl and wheel: zoom at the cursor. Values are in ' +
      (derived.units || 'the units of the images') + ', after Rescale Slope and Intercept.'));
    root.append($('<div>').addClass('enhance-compare-messages'));
    bindMouse(root, viewer);
    bindKeys(viewer);
    // Start in the middle of the series, where the anatomy usually is.
    viewer.go(Math.floor(derived.slices.length / 2));
    return viewer;
  }

  // Little endian, uncompressed: the pixel data can be read as stored.
  var UNCOMPRESSED = {'1.2.840.10008.1.2': true, '1.2.840.10008.1.2.1': true};

  // A series' description (describeSeries), and whether its pixel data is uncompressed,
  // from its first instance's transfer syntax.
  function readSeries(id) {
    return $.ajax({url: '../series/' + id + '/instances-tags?simplify', dataType: 'json', cache: false})
      .pipe(function (tags) {
        var series;
        try {
          series = describeSeries(id, tags);
        } catch (e) {
          return $.Deferred().reject({message: e.message});
        }
        return $.ajax({url: '../instances/' + series.slices[0].id + '/metadata/TransferSyntax',
                       dataType: 'text', cache: false})
          .pipe(function (syntax) {
            series.raw = !!UNCOMPRESSED[$.trim(syntax)];
            return series;
          }, function () { return $.Deferred().resolve(series); });
      });
  }

  // The uncertainty series of a derived series, or null: in the same study, made by
  // Orthanc Enhance as "uncertainty of" the same task and model (same DeviceUID), numbered
  // right after the derived series.
  function findUncertainty(derivedId) {
    var json = function (path) { return $.ajax({url: '..' + path, dataType: 'json', cache: false}); };
    var equipment = function (tags) {
      var ours = null;
      $.each(tags.ContributingEquipmentSequence || [], function (i, item) {
        if (item.Manufacturer === 'Orthanc Enhance') ours = item;
      });
      return ours;
    };
    return json('/series/' + derivedId).pipe(function (derived) {
      return $.when(json('/instances/' + derived.Instances[0] + '/simplified-tags'),
                    json('/studies/' + derived.ParentStudy + '/series')).pipe(function (tags, all) {
        var made = equipment(tags[0]);
        var number = Number(tags[0].SeriesNumber);
        var candidates = $.grep(all[0], function (s) {
          return s.ID !== derivedId && Number(s.MainDicomTags.SeriesNumber) === number + 1 &&
                 (s.Instances || []).length;
        });
        if (!made || !candidates.length) return null;
        return json('/instances/' + candidates[0].Instances[0] + '/simplified-tags').pipe(function (t) {
          var theirs = equipment(t);
          var isMap = theirs && /^uncertainty of /.test(theirs.ContributionDescription || '') &&
                      theirs.DeviceUID === made.DeviceUID;
          return isMap ? readSeries(candidates[0].ID) : null;
        });
      });
    }).pipe(null, function () { return $.Deferred().resolve(null); });
  }

  var ticket = 0;
  var active = null;

  function open(params) {
    ticket += 1;
    var mine = ticket;
    var root = $('#enhance-compare-view').empty().attr('data-rendered', '');
    $(document).unbind('mouseup.enhanceCompare');
    active = null;
    if (!params.source || !params.derived) {
      root.append($('<div>').addClass('enhance-error').text('Open this view from a derived series.'));
      return;
    }
    $('#enhance-compare-back').attr('href', '#series?uuid=' + params.derived);
    root.append($('<p>').text('Reading both series...'));
    $.when(readSeries(params.source), readSeries(params.derived), findUncertainty(params.derived))
      .done(function (source, derived, uncertainty) {
        if (mine !== ticket) return;
        active = build(root, source, derived, uncertainty);
      }).fail(function (xhr) {
        if (mine !== ticket) return;
        if (xhr && xhr.message) {
          root.empty().append($('<div>').addClass('enhance-error').attr('role', 'alert').text(xhr.message));
          return;
        }
        root.empty().append($('<div>').addClass('enhance-error').attr('role', 'alert')
          .text('Cannot read the series: HTTP ' + xhr.status));
      });
  }

  function parameters(url) {
    var query = (/\?(.*)$/.exec(url || '') || [])[1] || '';
    var out = {};
    $.each(query.split('&'), function (i, pair) {
      var kv = pair.split('=');
      if (kv[0]) out[decodeURIComponent(kv[0])] = decodeURIComponent(kv[1] || '');
    });
    return out;
  }

  installStyle();
  $(document).bind('pagebeforechange', function (event, data) {
    if (typeof data.toPage === 'string' && /(^|[#\/])enhance-compare(\?|$)/.test(data.toPage)) {
      ensurePage();
    }
  });
  $(document).bind('pagechange', function (event, data) {
    if ($.mobile.activePage && $.mobile.activePage.attr('id') === PAGE) open(parameters(window.location.hash));
  });
  $('#' + PAGE).live('pagehide', function () {
    ticket += 1;
    active = null;
    $(document).unbind('keydown.enhanceCompare mouseup.enhanceCompare');
  });
})(jQuery);
