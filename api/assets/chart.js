// candela's live candlestick chart: history from /api/v1/ohlcv, then the live
// stream (/api/v1/stream, server-sent events) from the last loaded bar's open,
// so there is no gap. Every event replaces the bar of its interval in place: a
// `partial` is the interval in progress, a `bar` an interval that closed, a
// `correction` a closed interval that changed (a late trade, a repair). A lost
// stream resumes from its last event id (the browser sends it by itself while
// it retries; after the stream was closed, it goes back as `last_event_id`),
// so nothing is missed and nothing is loaded again. Drawn by hand on one
// canvas.
//
// For tests and curious people, the canvas carries a small readable state:
// data-bars (bars held), data-last-close, data-last-time (the last bar's open,
// Unix seconds), data-last-update (ms since the epoch of the last stream event
// that changed the chart), data-updates (how many did) and data-state
// (loading | live | reconnecting | empty | error).
'use strict';
(() => {
  const INTERVALS = { '1m': 60, '5m': 300, '15m': 900, '1h': 3600, '1d': 86400 };
  const HISTORY_BARS = 600; // bars asked for at start
  const MAX_BARS = 5000; // bars kept while the stream runs
  const C = {
    bg: '#0f1419', grid: '#1c252f', axis: '#8b98a5', text: '#c7d0d9',
    up: '#26a69a', down: '#ef5350', upVol: 'rgba(38,166,154,0.45)', downVol: 'rgba(239,83,80,0.45)',
    cross: '#6b7a88', label: '#2a3542',
  };
  const FONT = '12px system-ui, "DejaVu Sans", sans-serif';

  const $ = (id) => document.getElementById(id);
  const canvas = $('chart');
  const ctx = canvas.getContext('2d');
  const pickInstrument = $('instrument');
  const pickInterval = $('interval');
  const statusEl = $('status');

  let bars = []; // { t, o, h, l, c, v, closed, raw }
  let instrument = '';
  let interval = '1m';
  let source = null; // the EventSource
  let generation = 0; // bumps on every (re)load; stale callbacks see a different one
  let updates = 0;
  let lastUpdate = 0;
  let spacing = 9; // px per bar (mouse wheel zooms)
  let mouse = null; // { x, y } over the canvas
  let frame = 0;

  const params = new URLSearchParams(location.search);
  if (INTERVALS[params.get('interval')]) interval = params.get('interval');
  pickInterval.value = interval;

  function setStatus(text, kind) {
    statusEl.textContent = text;
    statusEl.className = 'status' + (kind ? ' ' + kind : '');
  }

  function setState(state) {
    canvas.dataset.state = state;
  }

  function parseBar(b) {
    return {
      t: b.time, o: +b.open, h: +b.high, l: +b.low, c: +b.close, v: +b.volume_base,
      closed: !!b.closed, raw: b,
    };
  }

  // Puts a bar where it belongs: the last one replaced in place, a newer one
  // appended, an older one (rare) replaced or inserted by time.
  function upsert(bar) {
    const n = bars.length;
    if (n === 0 || bar.t > bars[n - 1].t) {
      bars.push(bar);
      if (bars.length > MAX_BARS) bars.splice(0, bars.length - MAX_BARS);
    } else if (bar.t === bars[n - 1].t) {
      bars[n - 1] = bar;
    } else {
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (bars[mid].t < bar.t) lo = mid + 1; else hi = mid;
      }
      if (lo < n && bars[lo].t === bar.t) bars[lo] = bar; else bars.splice(lo, 0, bar);
    }
  }

  function stopStream() {
    if (source) {
      source.close();
      source = null;
    }
  }

  async function errorText(resp) {
    try {
      const body = await resp.json();
      return body.message || body.error || resp.statusText;
    } catch (_) {
      return resp.statusText || String(resp.status);
    }
  }

  // Loads the history of the chosen instrument and interval, then goes live.
  async function load() {
    const my = ++generation;
    stopStream();
    bars = [];
    setState('loading');
    setStatus('loading ' + instrument + ' ' + interval + '…');
    schedule();
    const step = INTERVALS[interval];
    const start = Math.floor(Date.now() / 1000) - step * HISTORY_BARS;
    let from = start;
    const loaded = [];
    try {
      for (let page = 0; page < 20; page++) {
        const url = '/api/v1/ohlcv?instrument=' + encodeURIComponent(instrument) +
          '&interval=' + interval + '&from=' + from + '&limit=1000';
        const resp = await fetch(url, { cache: 'no-store' });
        if (my !== generation) return;
        if (resp.status === 404) break; // nothing stored yet: the stream will bring it
        if (!resp.ok) throw new Error('history: ' + resp.status + ' ' + (await errorText(resp)));
        const body = await resp.json();
        if (my !== generation) return;
        for (const b of body.bars) loaded.push(parseBar(b));
        if (!body.truncated || body.bars.length === 0) break;
        from = body.to + step;
      }
    } catch (err) {
      if (my !== generation) return;
      setState('error');
      setStatus(String(err.message || err), 'bad');
      setTimeout(() => { if (my === generation) load(); }, 5000);
      return;
    }
    for (const b of loaded) upsert(b);
    schedule();
    // The stream starts at the last loaded bar's open: that bar comes again
    // (closed or partial) and replaces ours, and nothing after it is missed.
    openStream(bars.length ? bars[bars.length - 1].t : start, my);
  }

  function openStream(from, my, lastId) {
    let url = '/api/v1/stream?instrument=' + encodeURIComponent(instrument) +
      '&interval=' + interval + '&from=' + from;
    if (lastId) url += '&last_event_id=' + encodeURIComponent(lastId);
    const es = new EventSource(url);
    source = es;
    let last = lastId || '';
    const onBar = (e) => {
      if (my !== generation) return;
      if (e.lastEventId) last = e.lastEventId;
      let bar;
      try {
        bar = parseBar(JSON.parse(e.data));
      } catch (_) {
        return;
      }
      upsert(bar);
      updates += 1;
      lastUpdate = Date.now();
      if (canvas.dataset.state !== 'live') {
        setState('live');
        setStatus('live', 'live');
      }
      schedule();
    };
    es.addEventListener('bar', onBar);
    es.addEventListener('partial', onBar);
    es.addEventListener('correction', onBar);
    es.onopen = () => {
      if (my !== generation) return;
      setState('live');
      setStatus('live', 'live');
    };
    es.onerror = () => {
      if (my !== generation) { es.close(); return; }
      setState('reconnecting');
      setStatus('stream lost, reconnecting…', 'bad');
      // While the browser retries, it sends the last event id itself. Once it
      // gave up (the stream closed), open it again from that id.
      if (es.readyState === EventSource.CLOSED) {
        setTimeout(() => {
          if (my === generation) openStream(from, my, last);
        }, 2000);
      }
    };
  }

  async function loadInstruments() {
    try {
      const resp = await fetch('/api/v1/instruments', { cache: 'no-store' });
      if (!resp.ok) throw new Error('instruments: ' + resp.status + ' ' + (await errorText(resp)));
      const list = await resp.json();
      pickInstrument.replaceChildren();
      for (const i of list) {
        const opt = document.createElement('option');
        opt.value = i.instrument;
        opt.textContent = i.instrument;
        pickInstrument.append(opt);
      }
      if (list.length === 0) {
        setState('empty');
        setStatus('no instruments stored yet; retrying…', 'bad');
        setTimeout(loadInstruments, 3000);
        return;
      }
      const wanted = params.get('instrument');
      instrument = list.some((i) => i.instrument === wanted) ? wanted : list[0].instrument;
      pickInstrument.value = instrument;
      pickInstrument.disabled = false;
      load();
    } catch (err) {
      setState('error');
      setStatus(String(err.message || err) + '; retrying…', 'bad');
      setTimeout(loadInstruments, 3000);
    }
  }

  function remember() {
    const q = new URLSearchParams({ instrument, interval });
    history.replaceState(null, '', location.pathname + '?' + q.toString());
  }

  pickInstrument.addEventListener('change', () => {
    instrument = pickInstrument.value;
    remember();
    load();
  });
  pickInterval.addEventListener('change', () => {
    interval = pickInterval.value;
    remember();
    if (instrument) load();
  });

  // ---- drawing -------------------------------------------------------------

  function schedule() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); });
  }

  function niceStep(range, count) {
    const raw = range / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const n = raw / mag;
    return (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag;
  }

  function decimalsFor(step) {
    return Math.max(0, Math.min(8, Math.ceil(-Math.log10(step) + 1e-9)));
  }

  const pad2 = (n) => String(n).padStart(2, '0');
  function timeLabel(t, tickStep) {
    const d = new Date(t * 1000);
    const date = pad2(d.getUTCMonth() + 1) + '-' + pad2(d.getUTCDate());
    if (tickStep >= 86400) return d.getUTCMonth() === 0 && d.getUTCDate() === 1 ? String(d.getUTCFullYear()) : date;
    if (t % 86400 === 0) return date;
    return pad2(d.getUTCHours()) + ':' + pad2(d.getUTCMinutes());
  }
  function fullTime(t) {
    const d = new Date(t * 1000);
    return d.getUTCFullYear() + '-' + pad2(d.getUTCMonth() + 1) + '-' + pad2(d.getUTCDate()) + ' ' +
      pad2(d.getUTCHours()) + ':' + pad2(d.getUTCMinutes()) + ' UTC';
  }
  function volumeText(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(2) + 'M';
    if (v >= 1e3) return (v / 1e3).toFixed(2) + 'k';
    return v.toFixed(v >= 100 ? 1 : 4);
  }

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = C.bg;
    ctx.fillRect(0, 0, w, h);
    ctx.font = FONT;
    ctx.textBaseline = 'middle';

    const last = bars[bars.length - 1];
    canvas.dataset.bars = String(bars.length);
    canvas.dataset.lastClose = last ? last.raw.close : '';
    canvas.dataset.lastTime = last ? String(last.t) : '';
    canvas.dataset.lastUpdate = lastUpdate ? String(lastUpdate) : '';
    canvas.dataset.updates = String(updates);

    if (bars.length === 0) {
      ctx.fillStyle = C.axis;
      ctx.textAlign = 'center';
      const what = canvas.dataset.state === 'loading' ? 'loading…' : 'no bars yet for ' + instrument + ' — waiting for trades';
      ctx.fillText(what, w / 2, h / 2);
      return;
    }

    const right = 84; // price axis
    const bottom = 24; // time axis
    const top = 30; // legend
    const left = 6;
    const plotW = Math.max(10, w - left - right);
    const plotH = Math.max(40, h - top - bottom);
    const volH = Math.round(plotH * 0.18);
    const priceH = plotH - volH - 10;
    // Few bars are spread over the width (up to 30 px each); many are drawn
    // at the zoom's spacing, the newest at the right.
    const sp = bars.length * spacing < plotW ? Math.min(30, Math.max(spacing, plotW / (bars.length + 3))) : spacing;
    const count = Math.max(1, Math.min(bars.length, Math.floor((plotW - sp) / sp)));
    const first = bars.length - count;
    const vis = bars.slice(first);
    const xAt = (i) => left + plotW - sp * 1.5 - (count - 1 - i) * sp;

    let lo = Infinity;
    let hi = -Infinity;
    let vmax = 0;
    for (const b of vis) {
      if (b.l < lo) lo = b.l;
      if (b.h > hi) hi = b.h;
      if (b.v > vmax) vmax = b.v;
    }
    if (hi === lo) { hi += Math.abs(hi) * 0.001 || 1; lo -= Math.abs(lo) * 0.001 || 1; }
    const padP = (hi - lo) * 0.06;
    hi += padP;
    lo -= padP;
    const yAt = (p) => top + (hi - p) / (hi - lo) * priceH;
    const volTop = top + priceH + 10;
    const vAt = (v) => volTop + volH - (vmax > 0 ? v / vmax * volH : 0);

    // price grid and axis
    const pStep = niceStep(hi - lo, Math.max(2, Math.floor(priceH / 48)));
    const dec = decimalsFor(pStep);
    ctx.textAlign = 'left';
    for (let p = Math.ceil(lo / pStep) * pStep; p <= hi; p += pStep) {
      const y = Math.round(yAt(p)) + 0.5;
      ctx.strokeStyle = C.grid;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + plotW, y); ctx.stroke();
      ctx.fillStyle = C.axis;
      ctx.fillText(p.toFixed(dec), left + plotW + 8, y);
    }

    // time grid and axis: the smallest round step at least ~90 px apart
    const step = INTERVALS[interval];
    const steps = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800,
      432000, 864000, 2592000, 7776000, 31536000];
    const tStep = steps.find((s) => s >= step && (s / step) * sp >= 90) || 31536000;
    ctx.textAlign = 'center';
    for (let i = 0; i < vis.length; i++) {
      // A tick at the first bar of each round period (a period's first
      // interval may have had no trades).
      const period = Math.floor(vis[i].t / tStep);
      if (i === 0 ? vis[i].t % tStep !== 0 : period === Math.floor(vis[i - 1].t / tStep)) continue;
      const x = Math.round(xAt(i)) + 0.5;
      ctx.strokeStyle = C.grid;
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, volTop + volH); ctx.stroke();
      ctx.fillStyle = C.axis;
      ctx.fillText(timeLabel(vis[i].t, tStep), x, h - bottom / 2);
    }
    ctx.strokeStyle = C.label;
    ctx.beginPath();
    ctx.moveTo(left, volTop + volH + 0.5); ctx.lineTo(left + plotW, volTop + volH + 0.5);
    ctx.moveTo(left + plotW + 0.5, top); ctx.lineTo(left + plotW + 0.5, volTop + volH);
    ctx.stroke();

    // volume, then candles
    const bodyW = Math.max(1, Math.round(sp * 0.7));
    for (let i = 0; i < vis.length; i++) {
      const b = vis[i];
      const up = b.c >= b.o;
      const x = Math.round(xAt(i) - bodyW / 2);
      const y = vAt(b.v);
      ctx.fillStyle = up ? C.upVol : C.downVol;
      ctx.fillRect(x, y, bodyW, volTop + volH - y);
    }
    for (let i = 0; i < vis.length; i++) {
      const b = vis[i];
      const up = b.c >= b.o;
      const color = up ? C.up : C.down;
      const xc = Math.round(xAt(i)) + 0.5;
      ctx.strokeStyle = color;
      ctx.beginPath(); ctx.moveTo(xc, yAt(b.h)); ctx.lineTo(xc, yAt(b.l)); ctx.stroke();
      const y1 = yAt(Math.max(b.o, b.c));
      const y2 = yAt(Math.min(b.o, b.c));
      ctx.fillStyle = color;
      ctx.fillRect(Math.round(xAt(i) - bodyW / 2), Math.round(y1), bodyW, Math.max(1, Math.round(y2 - y1)));
    }

    // last price line and label
    const lastUp = last.c >= last.o;
    const ly = Math.round(yAt(last.c)) + 0.5;
    ctx.setLineDash([3, 3]);
    ctx.strokeStyle = lastUp ? C.up : C.down;
    ctx.beginPath(); ctx.moveTo(left, ly); ctx.lineTo(left + plotW, ly); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = lastUp ? C.up : C.down;
    ctx.fillRect(left + plotW + 1, ly - 9, right - 2, 18);
    ctx.fillStyle = '#fff';
    ctx.textAlign = 'left';
    ctx.fillText(last.c.toFixed(Math.max(dec, 2)), left + plotW + 8, ly);

    // crosshair
    let shown = last;
    if (mouse && mouse.x >= left && mouse.x <= left + plotW && mouse.y >= top && mouse.y <= volTop + volH) {
      const i = Math.max(0, Math.min(vis.length - 1, Math.round((mouse.x - xAt(0)) / sp)));
      shown = vis[i];
      const x = Math.round(xAt(i)) + 0.5;
      ctx.strokeStyle = C.cross;
      ctx.setLineDash([4, 4]);
      ctx.beginPath();
      ctx.moveTo(x, top); ctx.lineTo(x, volTop + volH);
      ctx.moveTo(left, mouse.y + 0.5); ctx.lineTo(left + plotW, mouse.y + 0.5);
      ctx.stroke();
      ctx.setLineDash([]);
      if (mouse.y <= top + priceH) {
        const p = hi - (mouse.y - top) / priceH * (hi - lo);
        ctx.fillStyle = C.label;
        ctx.fillRect(left + plotW + 1, mouse.y - 9, right - 2, 18);
        ctx.fillStyle = C.text;
        ctx.textAlign = 'left';
        ctx.fillText(p.toFixed(dec), left + plotW + 8, mouse.y);
      }
      const label = fullTime(shown.t);
      const lw = ctx.measureText(label).width + 12;
      ctx.fillStyle = C.label;
      ctx.fillRect(Math.min(Math.max(left, x - lw / 2), left + plotW - lw), h - bottom + 2, lw, bottom - 4);
      ctx.fillStyle = C.text;
      ctx.textAlign = 'center';
      ctx.fillText(label, Math.min(Math.max(left + lw / 2, x), left + plotW - lw / 2), h - bottom / 2);
    }

    // legend: the hovered bar, or the last one
    const r = shown.raw;
    const legend = [
      [instrument + ' · ' + interval + ' · ' + fullTime(shown.t) + (r.closed ? '' : ' (live)'), C.text],
      ['O ' + r.open, C.axis], ['H ' + r.high, C.axis], ['L ' + r.low, C.axis],
      ['C ' + r.close, shown.c >= shown.o ? C.up : C.down],
      ['V ' + volumeText(shown.v), C.axis],
    ];
    ctx.textAlign = 'left';
    let lx = left + 4;
    for (const [text, color] of legend) {
      ctx.fillStyle = color;
      ctx.fillText(text, lx, top / 2);
      lx += ctx.measureText(text).width + 14;
    }
  }

  canvas.addEventListener('mousemove', (e) => {
    const r = canvas.getBoundingClientRect();
    mouse = { x: e.clientX - r.left, y: e.clientY - r.top };
    schedule();
  });
  canvas.addEventListener('mouseleave', () => { mouse = null; schedule(); });
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    spacing = Math.max(3, Math.min(40, spacing * (e.deltaY < 0 ? 1.15 : 1 / 1.15)));
    schedule();
  }, { passive: false });
  new ResizeObserver(schedule).observe(canvas);

  loadInstruments();
})();
