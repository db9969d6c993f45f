// SPDX-License-Identifier: GPL-3.0-or-later
//
// Orthanc Enhance in Orthanc Explorer (the jQuery Mobile Explorer of Orthanc 1.10).
//
// Orthanc concatenates the scripts of all plugins into /plugins/explorer.js, so everything
// lives in one closure and only ids and classes prefixed "enhance-" touch the page.
// Requests go through jQuery with URLs relative to /app/: the browser's own session (HTTP
// basic authentication, or the token headers Explorer sets with $.ajaxSetup for the
// authorization plugin) is reused and the script never holds a credential. The script is
// ES5 like Explorer itself, so that it runs wherever Explorer runs.
(function ($) {
  'use strict';

  var EQUIPMENT_MANUFACTURER = 'Orthanc Enhance';
  var POLL_MS = 1000;
  var FINAL_STATES = {Success: true, Failure: true};
  var TASK_LABELS = {
    denoise: 'Denoising',
    superres: 'Super-resolution',
    mr2ct: 'Synthetic CT from MR'
  };

  // Explorer reuses one DOM page for every series (and every study); a callback of an
  // earlier visit must not draw into the page of a later one. Each rendering takes a
  // ticket, and stale callbacks find theirs outdated.
  var tickets = {series: 0, instance: 0, study: 0, status: 0};
  var shown = {series: null, instance: null, study: null};

  function takeTicket(view) {
    tickets[view] += 1;
    return tickets[view];
  }

  function isCurrent(view, ticket) {
    return tickets[view] === ticket;
  }

  function taskLabel(task) {
    return TASK_LABELS[task] || task;
  }

  // --- REST ------------------------------------------------------------------------------

  function call(method, path, body) {
    var settings = {
      url: '..' + path,
      type: method,
      dataType: 'json',
      cache: false
    };
    if (body !== undefined) {
      settings.data = typeof body === 'string' ? body : JSON.stringify(body);
      settings.contentType = typeof body === 'string' ? 'text/plain' : 'application/json';
    }
    return $.ajax(settings);
  }

  // The plugin answers errors with {"HttpStatus", "Kind", "Message"}; Orthanc's own
  // errors carry "Message" and sometimes "Details".
  function errorText(xhr) {
    var body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch (ignored) {
      body = null;
    }
    if (body && body.Message) {
      return body.Details ? body.Message + ' (' + body.Details + ')' : body.Message;
    }
    if (xhr.status === 0) return 'Orthanc did not answer';
    return 'HTTP ' + xhr.status + ' ' + (xhr.statusText || '');
  }

  function tag(tags, name) {
    var value = tags ? tags[name] : undefined;
    return value === undefined || value === null ? '' : String(value);
  }

  function seriesLabel(series) {
    var tags = series.MainDicomTags || {};
    var label = tag(tags, 'SeriesDescription') || 'Series without description';
    if (tag(tags, 'SeriesNumber')) label += ' (series ' + tags.SeriesNumber + ')';
    return label;
  }

  // --- Small pieces of markup --------------------------------------------------------------

  function line(label, value) {
    return $('<p>').text(label + ': ').append($('<strong>').text(value));
  }

  // Links to Explorer pages are left to the browser: jQuery Mobile's own handling of a link
  // to the page already shown (series to series) changes neither the address nor
  // Explorer's content, while a plain change of the address does both.
  function pageLink(target) {
    return $('<a>').attr({href: '#' + target, 'data-ajax': 'false'});
  }

  // The side-by-side view of a derived series and its source (enhance-compare.js).
  function compareLink(sourceId, derivedId) {
    return pageLink('enhance-compare?source=' + sourceId + '&derived=' + derivedId);
  }

  function errorBox(prefix, message) {
    return $('<div>').addClass('enhance-error').attr('role', 'alert')
      .append($('<strong>').text(prefix + ' '))
      .append($('<span>').addClass('enhance-error-message').text(message));
  }

  // A series that a model's domain check found unlike its training images carries the
  // warning in ImageComments and at the start of its DerivationDescription (dicom.md): the
  // text, or '' when there is none.
  function domainWarning(tags) {
    var comments = tag(tags, 'ImageComments');
    if (/^WARNING: outside the domain/.test(comments)) return comments;
    var m = /^(WARNING: [^;]*);/.exec(tag(tags, 'DerivationDescription'));
    return m ? m[1] : '';
  }

  // The warning in a block nobody reads past: first in the banner, in red, as an alert.
  function domainWarningBox(warning) {
    var outside = /outside the domain/.test(warning);
    return $('<div>').addClass('enhance-domain-warning').attr('role', 'alert')
      .append($('<h3>').text(outside
        ? 'Outside the model\'s training domain \u2014 do not trust this result without review'
        : 'Orthanc Enhance recorded a warning \u2014 do not trust this result without review'))
      .append($('<p>').addClass('enhance-domain-text').text(warning))
      .append($('<p>').text(outside
        ? 'The model\'s domain check found the source series unlike the images the model was ' +
          'trained on. The model may have changed or invented structures: read the source ' +
          'series, and compare the two, before relying on these images.'
        : 'Read the source series, and compare the two, before relying on these images.'));
  }

  function progressBar(percent) {
    var value = Math.max(0, Math.min(100, Number(percent) || 0));
    return $('<div>').addClass('enhance-progress')
      .attr({role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': value})
      .append($('<div>').addClass('enhance-progress-bar').css('width', value + '%'));
  }

  function installStyle() {
    var css = [
      '.enhance-banner{background:#fff3cd;border:2px solid #b35c00;border-left-width:12px;',
      'border-radius:6px;padding:10px 16px;margin:0 0 12px 0;color:#3d2300;text-shadow:none}',
      '.enhance-banner h2{margin:0 0 6px 0;font-size:1.35em;color:#8a3b00}',
      '.enhance-banner p{margin:4px 0}',
      '.enhance-banner a{color:#0b4f9c}',
      '.enhance-badge{display:inline-block;background:#b35c00;color:#fff;border-radius:4px;',
      'padding:1px 8px;margin-right:10px;font-size:.8em;text-shadow:none;vertical-align:middle}',
      '.enhance-badge.enhance-badge-domain{background:#b71c1c}',
      '.enhance-derived-domain{margin-left:8px}',
      '.enhance-domain-warning{background:#b71c1c;color:#fff;border:2px solid #7f0000;border-radius:6px;',
      'padding:10px 14px;margin:0 0 10px 0;text-shadow:none;white-space:normal}',
      '.enhance-domain-warning h3{margin:0 0 6px 0;font-size:1.3em;color:#fff}',
      '.enhance-domain-warning p{margin:4px 0}',
      '.enhance-domain-warning .enhance-domain-text{font-weight:bold;font-size:1.05em}',
      '.enhance-card .enhance-domain-warning{padding:6px 10px;margin:6px 0}',
      '.enhance-card .enhance-domain-warning h3{font-size:1em;margin:0 0 3px 0}',
      '.enhance-card{background:#fff;border:1px solid #bbb;border-radius:6px;padding:8px 10px;',
      'margin:8px 0;text-shadow:none}',
      '.enhance-card h4{margin:0 0 4px 0}',
      '.enhance-card p{margin:3px 0;font-size:.9em}',
      '.enhance-progress{height:10px;background:#ddd;border-radius:5px;overflow:hidden;margin:6px 0}',
      '.enhance-progress-bar{height:100%;background:#2e7d32;transition:width .3s}',
      '.enhance-error{background:#fdecea;border:1px solid #c62828;color:#8e1c1c;border-radius:6px;',
      'padding:8px 10px;margin:8px 0;text-shadow:none;white-space:normal}',
      '.enhance-note{font-size:.85em;color:#555;white-space:normal;text-shadow:none}',
      '.enhance-model p.enhance-use{white-space:normal}',
      '.enhance-table{border-collapse:collapse;margin:6px 0;text-shadow:none;background:#fff}',
      '.enhance-table th,.enhance-table td{border:1px solid #ccc;padding:4px 8px;text-align:left;',
      'vertical-align:top}',
      '.enhance-table th{background:#eee}',
      '.enhance-table td.enhance-number{text-align:right;font-family:monospace}',
      '#enhance-status-content h3{margin:18px 0 6px 0}'
    ].join('');
    $('head').append($('<style>').attr('id', 'enhance-style').text(css));
  }

  // --- Jobs ------------------------------------------------------------------------------

  // A job's content is empty until Orthanc has run its first step: `hint` tells what was
  // asked for meanwhile.
  function jobTitle(job, hint) {
    var content = job.Content || {};
    var task = content.Task || (hint && hint.Task);
    var model = content.Model || (hint && hint.Model);
    if (!task) return 'Job ' + job.ID;
    var title = taskLabel(task) + ' with ' + (model || 'the default model');
    if (content.ModelVersion) title += ' ' + content.ModelVersion;
    return title;
  }

  // A card that shows one EnhanceSeries job and follows it until it ends.
  function JobCard(view, ticket, jobId, heading, hint) {
    this.view = view;
    this.hint = hint || null;
    this.ticket = ticket;
    this.jobId = jobId;
    this.heading = heading;
    this.node = $('<div>').addClass('enhance-card enhance-job').attr('data-job', jobId);
    this.node.append($('<p>').text('Submitted job ' + jobId + ', waiting for its state...'));
  }

  JobCard.prototype.draw = function (job) {
    var content = job.Content || {};
    var node = this.node.empty().attr('data-state', job.State);
    if (this.heading) node.append($('<p>').append($('<strong>').text(this.heading)));
    node.append($('<h4>').text(jobTitle(job, this.hint)));
    var state = job.State;
    if (state === 'Running' || state === 'Pending') {
      node.append(line('State', state + ', ' + job.Progress + ' %' +
                       (content.Stage ? ' (' + content.Stage + ')' : '')));
      node.append(progressBar(job.Progress));
    } else if (state === 'Success') {
      node.append(line('State', content.AlreadyProcessed
        ? 'done earlier: this request had already been completed, nothing new was made'
        : 'done' + (content.DerivedInstances ? ', ' + content.DerivedInstances + ' images' : '')));
      if (content.DerivedSeries) {
        node.append($('<p>').append(
          pageLink('series?uuid=' + content.DerivedSeries).addClass('enhance-derived-link')
            .text('Open the derived series (AI-generated)')));
      }
      if (content.Domain && content.Domain.Outside) {
        node.append(domainWarningBox('WARNING: ' + (content.Domain.Warning ||
                                                    'outside the domain the model was trained on')));
      }
      if (content.Stage === 'forwarding failed') {
        node.append(errorBox('Forwarding failed:', 'see the job details for each destination'));
      }
    } else if (state === 'Failure') {
      node.append(line('State', 'failed'));
      node.append(errorBox('Error:', content.ErrorMessage || job.ErrorDescription || 'unknown error'));
    } else {
      node.append(line('State', state + ', ' + job.Progress + ' %'));
    }
    if (content.Warnings && content.Warnings.length) {
      node.append($('<p>').addClass('enhance-note').text('Warnings: ' + content.Warnings.join('; ')));
    }
    node.append($('<p>').addClass('enhance-note').append(
      pageLink('job?uuid=' + this.jobId).text('Job details in Explorer')));
  };

  JobCard.prototype.follow = function () {
    var card = this;
    if (!isCurrent(card.view, card.ticket)) return;
    call('GET', '/jobs/' + card.jobId).done(function (job) {
      if (!isCurrent(card.view, card.ticket)) return;
      card.draw(job);
      if (!FINAL_STATES[job.State]) setTimeout(function () { card.follow(); }, POLL_MS);
    }).fail(function (xhr) {
      if (!isCurrent(card.view, card.ticket)) return;
      card.node.empty().append(errorBox('Cannot read job ' + card.jobId + ':', errorText(xhr)));
    });
  };

  // pipe(), not then(): Explorer's jQuery 1.7 has then() that does not pass on a new value.
  function enhanceJobs(filter) {
    return call('GET', '/jobs?expand').pipe(function (jobs) {
      var ours = $.grep(jobs || [], function (job) {
        return job.Type === 'EnhanceSeries' && filter(job);
      });
      ours.sort(function (a, b) {
        return a.CreationTime < b.CreationTime ? 1 : a.CreationTime > b.CreationTime ? -1 : 0;
      });
      return ours;
    });
  }

  // --- Series page: start a task, follow it ----------------------------------------------

  function drawEnhanceMenu(panel, ticket, seriesId, modality, models) {
    var jobs = $('<div>').attr('id', 'enhance-series-jobs');
    var messages = $('<div>').attr('id', 'enhance-series-messages');
    var usable = $.grep(models, function (m) {
      return $.inArray(modality, m.Modalities || []) >= 0;
    });
    var menu = $('<div>').attr({'data-role': 'collapsible', 'data-theme': 'b', 'data-content-theme': 'd',
                                id: 'enhance-menu'});
    menu.append($('<h3>').text('Enhance this series (AI)'));
    if (usable.length === 0) {
      menu.append($('<p>').addClass('enhance-note')
        .text('No installed model accepts modality ' + (modality || '(none)') + '.'));
    } else {
      var list = $('<ul>').attr({'data-role': 'listview', 'data-inset': 'true', 'data-theme': 'd',
                                 'data-divider-theme': 'c'});
      var tasks = [];
      $.each(usable, function (i, m) {
        if ($.inArray(m.Task, tasks) < 0) tasks.push(m.Task);
      });
      $.each(tasks, function (i, task) {
        list.append($('<li>').attr('data-role', 'list-divider').text(taskLabel(task)));
        $.each(usable, function (j, m) {
          if (m.Task !== task) return;
          var link = $('<a>').attr('href', '#').addClass('enhance-start')
            .attr({'data-task': m.Task, 'data-model': m.Name})
            .append($('<h3>').text(m.Name + ', version ' + m.Version))
            .append($('<p>').addClass('enhance-use').text(m.IntendedUse || 'No intended use declared.'));
          list.append($('<li>').addClass('enhance-model').append(link));
        });
      });
      menu.append($('<p>').addClass('enhance-note').text(
        'Models for ' + modality + '. The result is a new derived series in this study; ' +
        'this series is not modified.'));
      menu.append(list);
    }
    panel.empty().append(menu).append(messages).append(jobs);
    panel.trigger('create');

    panel.find('a.enhance-start').click(function (event) {
      event.preventDefault();
      var task = $(this).attr('data-task');
      var model = $(this).attr('data-model');
      messages.empty();
      menu.trigger('collapse');
      call('POST', '/enhance/series/' + seriesId, {Task: task, Model: model}).done(function (answer) {
        if (!isCurrent('series', ticket)) return;
        var card = new JobCard('series', ticket, answer.ID, null, {Task: task, Model: model});
        jobs.prepend(card.node);
        card.follow();
      }).fail(function (xhr) {
        if (!isCurrent('series', ticket)) return;
        messages.append(errorBox('Could not start ' + taskLabel(task) + ' with ' + model + ':',
                                 errorText(xhr)));
      });
    });

    // Jobs of this series started earlier (here, by a rule or by REST) are shown too, so
    // leaving the page and coming back does not lose a running job.
    enhanceJobs(function (job) {
      return job.Content && job.Content.SourceSeries === seriesId;
    }).done(function (earlier) {
      if (!isCurrent('series', ticket)) return;
      $.each(earlier, function (i, job) {
        if (jobs.find('[data-job="' + job.ID + '"]').length) return;
        var card = new JobCard('series', ticket, job.ID, null);
        card.draw(job);
        jobs.append(card.node);
        if (!FINAL_STATES[job.State]) card.follow();
      });
    });
  }

  // What the first instance of a series says about its making, or null when this product
  // did not make it.
  function provenance(tags) {
    var items = tags.ContributingEquipmentSequence || [];
    var ours = null;
    $.each(items, function (i, item) {
      if (tag(item, 'Manufacturer') === EQUIPMENT_MANUFACTURER) ours = item;
    });
    if (!ours) return null;
    var versions = tag(ours, 'SoftwareVersions').split('\\');
    var derivation = tag(tags, 'DerivationDescription');
    var warning = domainWarning(tags);
    var sourceUid = '';
    if (tags.ReferencedSeriesSequence && tags.ReferencedSeriesSequence.length) {
      sourceUid = tag(tags.ReferencedSeriesSequence[0], 'SeriesInstanceUID');
    }
    // An uncertainty series' contribution says so, then names the task of its derived
    // series (its DerivationDescription may be too long for Orthanc's JSON).
    var contribution = tag(ours, 'ContributionDescription');
    var uncertainty = /^uncertainty of (\w+) with /.exec(contribution);
    return {
      // DerivationDescription (after a warning) and ContributionDescription both start
      // with the task name.
      task: uncertainty ? uncertainty[1]
                        : (derivation.replace(/^WARNING: [^;]*; /, '') || contribution).split(' ')[0],
      uncertainty: !!uncertainty,
      model: tag(ours, 'ManufacturerModelName'),
      productVersion: versions[0] || '',
      modelVersion: versions.length > 1 ? versions[1] : '',
      modelUid: tag(ours, 'DeviceUID'),
      when: tag(ours, 'ContributionDateTime'),
      derivation: derivation,
      warning: warning,
      synthetic: tag(tags, 'SyntheticData') === 'YES',
      sourceUid: sourceUid
    };
  }

  function formatDateTime(value) {
    var m = /^(\d{4})(\d{2})(\d{2})(\d{2})?(\d{2})?(\d{2})?/.exec(value || '');
    if (!m) return value || '';
    var text = m[1] + '-' + m[2] + '-' + m[3];
    if (m[4]) text += ' ' + m[4] + ':' + (m[5] || '00');
    return text;
  }

  function metricsTable(answer) {
    var table = $('<table>').addClass('enhance-table enhance-metrics-table');
    var units = answer.Units ? ' (' + answer.Units + ')' : '';
    var overall = answer.Overall || {};
    function row(name, value, digits, note) {
      var text = value === null || value === undefined ? 'n/a' : Number(value).toFixed(digits);
      table.append($('<tr>').append($('<th>').text(name))
        .append($('<td>').addClass('enhance-number').text(text + (note || ''))));
    }
    row('PSNR', overall.PSNR, 2, ' dB');
    row('SSIM', overall.SSIM, 4);
    row('MAE' + units, overall.MAE, 2);
    row('RMSE' + units, overall.RMSE, 2);
    table.append($('<tr>').append($('<th>').text('Voxels compared'))
      .append($('<td>').addClass('enhance-number').text(String(overall.Voxels))));
    table.append($('<tr>').append($('<th>').text('Data range' + units))
      .append($('<td>').addClass('enhance-number').text(Number(answer.DataRange).toFixed(1))));
    table.append($('<tr>').append($('<th>').text('Slices'))
      .append($('<td>').addClass('enhance-number').text(String((answer.Slices || []).length))));
    return table;
  }

  // The part of the banner that series and instance pages share.
  function drawProvenance(banner, p, what) {
    banner.empty().addClass('enhance-banner').attr('role', 'note');
    if (p.warning) banner.append(domainWarningBox(p.warning));
    banner.append($('<h2>').text(p.uncertainty
      ? 'AI uncertainty map: where the model\'s samples disagree, not an image of the patient'
      : (p.synthetic ? 'AI-generated synthetic ' : 'AI-derived ') + what + ': not an acquired image'));
    banner.append($('<p>').text('Computed by Orthanc Enhance' +
                                (p.productVersion ? ' ' + p.productVersion : '') + ' from another series. ' +
                                'Do not read it as the original acquisition.'));
    banner.append(line('Task', taskLabel(p.task) + ' (' + p.task + ')'));
    banner.append(line('Model', p.model + (p.modelVersion ? ', version ' + p.modelVersion : '')));
    if (p.when) banner.append(line('Computed on', formatDateTime(p.when)));
    if (p.derivation) banner.append(line('Derivation', p.derivation));
  }

  // First in the title, which jQuery Mobile cuts short with an ellipsis on narrow screens.
  function markHeader(pageId, p) {
    var title = $(pageId + ' [data-role="header"] h1');
    if (p.warning) {
      title.prepend($('<span>').addClass('enhance-badge enhance-badge-domain')
        .text('Outside training domain'));
    }
    title.prepend($('<span>').addClass('enhance-badge').text('AI-derived'));
  }

  function drawBanner(banner, ticket, seriesId, p) {
    drawProvenance(banner, p, 'series');
    var source = $('<p>').addClass('enhance-source').text('Source series: ');
    banner.append(source);
    var actions = $('<div>').addClass('enhance-actions');
    var results = $('<div>').attr('id', 'enhance-metrics');
    banner.append(actions).append(results);

    if (!p.sourceUid) {
      source.append($('<em>').text('not recorded in the images'));
      return;
    }
    call('POST', '/tools/lookup', p.sourceUid).done(function (matches) {
      if (!isCurrent('series', ticket)) return;
      var found = $.grep(matches || [], function (m) { return m.Type === 'Series'; });
      if (found.length === 0) {
        source.append($('<em>').text('not stored in this Orthanc (SeriesInstanceUID ' + p.sourceUid + ')'));
        return;
      }
      var sourceId = found[0].ID;
      var link = pageLink('series?uuid=' + sourceId).attr('id', 'enhance-source-link')
        .text(sourceId);
      source.append(link);
      call('GET', '/series/' + sourceId).done(function (series) {
        if (isCurrent('series', ticket)) link.text(seriesLabel(series));
      });

      // An uncertainty map is not an image of the patient: nothing to compare it with.
      if (p.uncertainty) return;
      var view = compareLink(sourceId, seriesId).attr({id: 'enhance-compare-link', 'data-role': 'button',
                                                       'data-inline': 'true', 'data-icon': 'grid',
                                                       'data-theme': 'b'})
        .text('Compare side by side');
      var button = $('<a>').attr({href: '#', id: 'enhance-evaluate', 'data-role': 'button',
                                  'data-inline': 'true', 'data-icon': 'search', 'data-theme': 'b'})
        .text('Compare with the source series');
      actions.append(view).append(button).append($('<span>').addClass('enhance-note').text(
        ' PSNR, SSIM, MAE and RMSE of this series against its source. They measure how much ' +
        'the model changed the images, not diagnostic quality.'));
      actions.trigger('create');
      button.click(function (event) {
        event.preventDefault();
        results.empty().append($('<p>').addClass('enhance-note').text('Comparing...'));
        call('POST', '/enhance/evaluate', {Reference: sourceId, Test: seriesId}).done(function (answer) {
          if (!isCurrent('series', ticket)) return;
          results.empty().append($('<p>').append($('<strong>').text('Against the source series:')))
            .append(metricsTable(answer));
        }).fail(function (xhr) {
          if (!isCurrent('series', ticket)) return;
          results.empty().append(errorBox('Cannot compare:', errorText(xhr)));
        });
      });
    }).fail(function (xhr) {
      if (isCurrent('series', ticket)) source.append(errorBox('Lookup failed:', errorText(xhr)));
    });
  }

  // The series of the study that Orthanc Enhance derived from this one, each with links to
  // it and to the side-by-side view.
  function drawDerivedList(panel, ticket, series) {
    var uid = tag(series.MainDicomTags, 'SeriesInstanceUID');
    var box = $('<div>').attr('id', 'enhance-derived-list');
    panel.append(box);
    call('GET', '/studies/' + series.ParentStudy + '/series').done(function (all) {
      if (!isCurrent('series', ticket)) return;
      var others = $.grep(all || [], function (s) { return s.ID !== series.ID && (s.Instances || []).length; });
      var lookups = $.map(others, function (s) {
        return call('GET', '/instances/' + s.Instances[0] + '/simplified-tags').pipe(function (tags) {
          var p = provenance(tags);
          return p && p.sourceUid === uid ? {series: s, provenance: p} : null;
        }, function () { return $.Deferred().resolve(null); });
      });
      $.when.apply($, lookups).done(function () {
        if (!isCurrent('series', ticket)) return;
        var found = $.grep($.makeArray(arguments).slice(0, lookups.length), function (x) { return x; });
        if (!found.length) return;
        box.append($('<h4>').text('AI-derived series of this series'));
        $.each(found, function (i, d) {
          var name = $('<p>').append($('<strong>').text(seriesLabel(d.series)));
          if (d.provenance.warning) {
            name.append($('<span>').addClass('enhance-badge enhance-badge-domain enhance-derived-domain')
              .attr('title', d.provenance.warning).text('Outside training domain'));
          }
          box.append($('<div>').addClass('enhance-card enhance-derived-item').attr('data-series', d.series.ID)
            .append(name)
            .append($('<p>').text(taskLabel(d.provenance.task) + ' with ' + d.provenance.model +
                                  (d.provenance.modelVersion ? ' ' + d.provenance.modelVersion : '')))
            .append($('<p>').append(pageLink('series?uuid=' + d.series.ID).text('Open'))
              .append(' | ')
              .append(compareLink(series.ID, d.series.ID).addClass('enhance-derived-compare')
                .text('Compare side by side'))));
        });
      });
    });
  }

  function renderSeries(seriesId) {
    var ticket = takeTicket('series');
    shown.series = seriesId;
    var banner = $('#enhance-derived-banner').empty().removeClass('enhance-banner').hide();
    var panel = $('#enhance-series-panel').empty();
    $('#series .enhance-badge').remove();
    if (!seriesId) return;

    call('GET', '/series/' + seriesId).done(function (series) {
      if (!isCurrent('series', ticket)) return;
      var instances = series.Instances || [];
      var modality = tag(series.MainDicomTags, 'Modality');
      if (instances.length === 0) return;
      $.when(call('GET', '/instances/' + instances[0] + '/simplified-tags'),
             call('GET', '/enhance/models')).done(function (tagsAnswer, modelsAnswer) {
        if (!isCurrent('series', ticket)) return;
        var p = provenance(tagsAnswer[0]);
        if (p) {
          markHeader('#series', p);
          banner.show();
          drawBanner(banner, ticket, seriesId, p);
        } else {
          drawEnhanceMenu(panel, ticket, seriesId, modality, modelsAnswer[0] || []);
          drawDerivedList(panel, ticket, series);
        }
      }).fail(function (xhr) {
        if (isCurrent('series', ticket)) panel.append(errorBox('Orthanc Enhance:', errorText(xhr)));
      });
    });
  }

  // --- Instance page: the same warning on each image ------------------------------------

  function renderInstance(instanceId) {
    var ticket = takeTicket('instance');
    shown.instance = instanceId;
    var banner = $('#enhance-instance-banner').empty().removeClass('enhance-banner').hide();
    $('#instance .enhance-badge').remove();
    if (!instanceId) return;
    $.when(call('GET', '/instances/' + instanceId),
           call('GET', '/instances/' + instanceId + '/simplified-tags')).done(function (instance, tags) {
      if (!isCurrent('instance', ticket)) return;
      var p = provenance(tags[0]);
      if (!p) return;
      markHeader('#instance', p);
      drawProvenance(banner, p, 'image');
      banner.append($('<p>').append(
        pageLink('series?uuid=' + instance[0].ParentSeries).attr('id', 'enhance-instance-series')
          .text('Open its series: source series and comparison')));
      banner.show();
    });
  }

  // --- Study page: every series at once --------------------------------------------------

  function drawStudySummary(target, ticket, task, answer, seriesById) {
    target.empty();
    var jobs = answer.Jobs || [];
    var skipped = answer.Skipped || [];
    target.append($('<p>').addClass('enhance-summary').append($('<strong>').text(
      taskLabel(task) + ': ' + jobs.length + ' job' + (jobs.length === 1 ? '' : 's') + ' submitted, ' +
      skipped.length + ' series skipped')));
    $.each(jobs, function (i, job) {
      var series = seriesById[job.Series];
      var card = new JobCard('study', ticket, job.ID, series ? seriesLabel(series) : job.Series,
                             {Task: task, Model: job.Model});
      target.append(card.node);
      card.follow();
    });
    if (skipped.length) {
      var table = $('<table>').addClass('enhance-table enhance-skipped');
      table.append($('<tr>').append($('<th>').text('Skipped series')).append($('<th>').text('Reason')));
      $.each(skipped, function (i, s) {
        var series = seriesById[s.Series];
        table.append($('<tr>')
          .append($('<td>').append(pageLink('series?uuid=' + s.Series)
            .text(series ? seriesLabel(series) : s.Series)))
          .append($('<td>').text(s.Reason)));
      });
      target.append(table);
    }
  }

  function renderStudy(studyId) {
    var ticket = takeTicket('study');
    shown.study = studyId;
    var panel = $('#enhance-study-panel').empty();
    if (!studyId) return;
    call('GET', '/enhance/models').done(function (models) {
      if (!isCurrent('study', ticket)) return;
      var tasks = [];
      $.each(models || [], function (i, m) {
        if ($.inArray(m.Task, tasks) < 0) tasks.push(m.Task);
      });
      var box = $('<div>').attr({'data-role': 'collapsible', 'data-collapsed': 'false', 'data-theme': 'b',
                                 'data-content-theme': 'd', id: 'enhance-study'});
      box.append($('<h3>').text('Enhance all series (AI)'));
      if (tasks.length === 0) {
        box.append($('<p>').addClass('enhance-note').text('No model is installed.'));
        panel.append(box).trigger('create');
        return;
      }
      var select = $('<select>').attr({id: 'enhance-study-task', name: 'enhance-study-task'});
      $.each(tasks, function (i, task) {
        select.append($('<option>').attr('value', task).text(taskLabel(task)));
      });
      box.append($('<label>').attr('for', 'enhance-study-task').text('Task'));
      box.append(select);
      var button = $('<a>').attr({href: '#', id: 'enhance-study-start', 'data-role': 'button',
                                  'data-icon': 'gear', 'data-theme': 'b'}).text('Enhance all series');
      box.append(button);
      box.append($('<p>').addClass('enhance-note').text(
        'One job per series, each with the first model of the task for its modality. Derived ' +
        'series and series no model accepts are skipped.'));
      var summary = $('<div>').attr('id', 'enhance-study-summary');
      box.append(summary);
      panel.append(box).trigger('create');

      button.click(function (event) {
        event.preventDefault();
        var task = select.val();
        summary.empty().append($('<p>').addClass('enhance-note').text('Submitting...'));
        $.when(call('POST', '/enhance/studies/' + studyId, {Task: task}),
               call('GET', '/studies/' + studyId + '/series')).done(function (answer, series) {
          if (!isCurrent('study', ticket)) return;
          var byId = {};
          $.each(series[0] || [], function (i, s) { byId[s.ID] = s; });
          drawStudySummary(summary, ticket, task, answer[0], byId);
        }).fail(function (xhr) {
          if (!isCurrent('study', ticket)) return;
          summary.empty().append(errorBox('Could not start:', errorText(xhr)));
        });
      });
    }).fail(function (xhr) {
      if (isCurrent('study', ticket)) panel.append(errorBox('Orthanc Enhance:', errorText(xhr)));
    });
  }

  // --- Status page -------------------------------------------------------------------------

  var STATUS_PAGE = 'enhance-status';

  function ensureStatusPage() {
    if ($('#' + STATUS_PAGE).length) return;
    var header = $('<div>').attr('data-role', 'header')
      .append($('<h1>').append($('<span>').addClass('orthanc-name')).append('AI enhancement status'))
      .append($('<div>').attr({'data-type': 'horizontal', 'data-role': 'controlgroup'})
        .addClass('ui-btn-left')
        .append($('<a>').attr({href: '#lookup', 'data-icon': 'arrow-r', 'data-role': 'button',
                               'data-direction': 'reverse'}).text('Lookup'))
        .append($('<a>').attr({href: '#plugins', 'data-icon': 'grid', 'data-role': 'button',
                               'data-direction': 'reverse'}).text('Plugins')))
      .append($('<div>').attr({'data-type': 'horizontal', 'data-role': 'controlgroup'})
        .addClass('ui-btn-right')
        .append($('<a>').attr({href: '#jobs', 'data-icon': 'refresh', 'data-role': 'button',
                               'data-direction': 'reverse'}).text('Jobs')));
    var page = $('<div>').attr({'data-role': 'page', id: STATUS_PAGE, 'data-url': STATUS_PAGE})
      .append(header)
      .append($('<div>').attr('data-role', 'content')
        .append($('<div>').attr('id', 'enhance-status-content')));
    ($.mobile.pageContainer || $('body')).append(page);
  }

  function statusTable(rows) {
    var table = $('<table>').addClass('enhance-table');
    $.each(rows, function (i, r) {
      table.append($('<tr>').append($('<th>').text(r[0])).append($('<td>').text(String(r[1]))));
    });
    return table;
  }

  function drawStatus(target, system, active) {
    target.empty();
    target.append($('<h3>').text('Orthanc Enhance ' + system.Version));
    target.append(statusTable([
      ['Device', system.Device],
      ['LibTorch', system.TorchVersion + ', ' + system.Threads + ' threads'],
      ['Automatic processing', system.Enabled ? 'on (rules: ' + ((system.Rules || []).join(', ') || 'none') + ')'
                                              : 'off'],
      ['Series processed at once', system.ConcurrentSeries]
    ]).attr('id', 'enhance-status-system'));

    var jobs = system.Jobs || {};
    var series = system.Series || {};
    target.append($('<h3>').text('Work'));
    target.append(statusTable([
      ['Jobs submitted', jobs.Submitted],
      ['Jobs running', jobs.Running],
      ['Jobs succeeded', jobs.Succeeded],
      ['Jobs failed', jobs.Failed],
      ['Series awaiting routing', series.AwaitingRouting],
      ['Series skipped by the rules', series.Skipped],
      ['Slices processed', series.SlicesProcessed]
    ]).attr('id', 'enhance-status-counters'));

    target.append($('<h3>').text('Queued and running jobs'));
    if (active.length === 0) {
      target.append($('<p>').attr('id', 'enhance-status-idle').text('No job is queued or running.'));
    } else {
      var table = $('<table>').addClass('enhance-table').attr('id', 'enhance-status-jobs');
      table.append($('<tr>').append($('<th>').text('State')).append($('<th>').text('Progress'))
        .append($('<th>').text('Task and model')).append($('<th>').text('Source series'))
        .append($('<th>').text('Job')));
      $.each(active, function (i, job) {
        var content = job.Content || {};
        table.append($('<tr>')
          .append($('<td>').text(job.State + (content.Stage ? ' (' + content.Stage + ')' : '')))
          .append($('<td>').addClass('enhance-number').text(job.Progress + ' %'))
          .append($('<td>').text(jobTitle(job)))
          .append($('<td>').append(pageLink('series?uuid=' + content.SourceSeries)
            .text(content.SourceSeries || '')))
          .append($('<td>').append(pageLink('job?uuid=' + job.ID).text(job.ID))));
      });
      target.append(table);
    }

    target.append($('<h3>').text('Models'));
    var models = $('<table>').addClass('enhance-table').attr('id', 'enhance-status-models');
    models.append($('<tr>').append($('<th>').text('Model')).append($('<th>').text('Version'))
      .append($('<th>').text('Task')).append($('<th>').text('Modalities'))
      .append($('<th>').text('Intended use')).append($('<th>').text('Source')));
    $.each(system.Models || [], function (i, m) {
      models.append($('<tr>').append($('<td>').text(m.Name)).append($('<td>').text(m.Version))
        .append($('<td>').text(taskLabel(m.Task))).append($('<td>').text((m.Modalities || []).join(', ')))
        .append($('<td>').text(m.IntendedUse || '')).append($('<td>').text(m.Builtin ? 'built-in' : 'folder')));
    });
    target.append(models);

    var problems = (system.ModelProblems || []).map(function (p) {
      return (p.Name || p.Folder) + ': ' + p.Message;
    }).concat(system.RuleProblems || []);
    $.each(problems, function (i, problem) {
      target.append(errorBox('Problem:', problem));
    });
  }

  function refreshStatus(ticket) {
    if (!isCurrent('status', ticket)) return;
    var target = $('#enhance-status-content');
    $.when(call('GET', '/enhance/system'), enhanceJobs(function (job) {
      return !FINAL_STATES[job.State];
    })).done(function (system, active) {
      if (!isCurrent('status', ticket)) return;
      drawStatus(target, system[0], active);
      setTimeout(function () { refreshStatus(ticket); }, 2 * POLL_MS);
    }).fail(function (xhr) {
      if (!isCurrent('status', ticket)) return;
      target.empty().append(errorBox('Cannot read the status of Orthanc Enhance:', errorText(xhr)));
    });
  }

  // --- Wiring into Explorer's pages ----------------------------------------------------------

  function currentUuid() {
    return ($.mobile.pageData && $.mobile.pageData.uuid) || null;
  }

  installStyle();

  // The status page is not in explorer.html: it is created on the first navigation to it,
  // before jQuery Mobile looks it up, so that a bookmark to #enhance-status works too.
  $(document).bind('pagebeforechange', function (event, data) {
    if (typeof data.toPage === 'string' && /(^|[#\/])enhance-status(\?|$)/.test(data.toPage)) {
      ensureStatusPage();
    }
  });

  // Markup is added before jQuery Mobile enhances a page, so it is styled like the rest; the
  // panels go on top of the right-hand column, where they are seen without scrolling.
  $('#lookup').live('pagebeforecreate', function () {
    var link = $('<a>').attr({href: '#' + STATUS_PAGE, id: 'enhance-status-link', 'data-role': 'button',
                              'data-icon': 'info', 'data-theme': 'b'})
      .text('AI enhancement (Orthanc Enhance): status and models');
    $('#lookup-form').before($('<div>').addClass('enhance-home').append(link));
  });

  $('#series').live('pagebeforecreate', function () {
    $(this).children('[data-role="content"]').prepend($('<div>').attr('id', 'enhance-derived-banner').hide());
    $(this).find('.ui-block-b > div').first().prepend($('<div>').attr('id', 'enhance-series-panel'));
  });

  $('#instance').live('pagebeforecreate', function () {
    $(this).children('[data-role="content"]').prepend($('<div>').attr('id', 'enhance-instance-banner').hide());
  });

  $('#study').live('pagebeforecreate', function () {
    $(this).find('.ui-block-b > div').first().prepend($('<div>').attr('id', 'enhance-study-panel'));
  });

  $('#series').live('pagebeforeshow', function () { renderSeries(currentUuid()); });
  $('#instance').live('pagebeforeshow', function () { renderInstance(currentUuid()); });
  $('#study').live('pagebeforeshow', function () { renderStudy(currentUuid()); });
  $('#' + STATUS_PAGE).live('pagebeforeshow', function () { refreshStatus(takeTicket('status')); });
  // Leaving a page stops its polling.
  $('#' + STATUS_PAGE).live('pagehide', function () { takeTicket('status'); });
  $('#series').live('pagehide', function () {
    takeTicket('series');
    shown.series = null;
  });
  $('#instance').live('pagehide', function () {
    takeTicket('instance');
    shown.instance = null;
  });
  $('#study').live('pagehide', function () {
    takeTicket('study');
    shown.study = null;
  });

  // Going from one series to another (the link to a derived series or back to its source)
  // stays on the same page: jQuery Mobile then announces no pagebeforeshow, only pagechange.
  $(document).bind('pagechange', function () {
    var page = $.mobile.activePage ? $.mobile.activePage.attr('id') : '';
    var uuid = currentUuid();
    if (page === 'series' && uuid !== shown.series) renderSeries(uuid);
    if (page === 'instance' && uuid !== shown.instance) renderInstance(uuid);
    if (page === 'study' && uuid !== shown.study) renderStudy(uuid);
  });
})(jQuery);
