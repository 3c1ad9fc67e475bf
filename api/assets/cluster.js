// candela's cluster page: the nodes (/admin/cluster), every actor with its
// machine, current state and restarts (/admin/actors), and each actor's
// state-machine diagram with its current state highlighted
// (/admin/actors/{name}/diagram?format=svg), refreshed every few seconds.
//
// The admin API wants a bearer token. The page takes it from the URL fragment
// (`#token=…`, removed from the address bar at once) or from the field, keeps
// it in sessionStorage (this tab only), and says so plainly when it is refused.
//
// Rows and cards carry data-actor, data-machine and data-state; a card's
// diagram carries data-diagram-state (the state it highlights). A click on a
// diagram widens it to the whole row.
'use strict';
(() => {
  const KEY = 'candela.adminToken';
  const REFRESH_MS = 3000;
  const $ = (id) => document.getElementById(id);
  const statusEl = $('status');
  const messageEl = $('message');
  const tokenEl = $('token');
  const nodesBody = document.querySelector('#nodes tbody');
  const actorsBody = document.querySelector('#actors tbody');
  const backfillBody = document.querySelector('#backfill tbody');
  const cards = $('diagrams');

  let token = '';
  let timer = 0;
  let running = false;
  const cardOf = new Map(); // actor name -> card element

  class Refused extends Error {}

  function takeToken() {
    const m = location.hash.match(/(?:^#|&)token=([^&]*)/);
    if (m) {
      sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
    return sessionStorage.getItem(KEY) || '';
  }

  function say(text, kind) {
    if (!text) {
      messageEl.hidden = true;
      messageEl.textContent = '';
      return;
    }
    messageEl.hidden = false;
    messageEl.className = 'message' + (kind === 'error' ? ' error' : '');
    messageEl.textContent = text;
  }

  function setStatus(text, kind) {
    statusEl.textContent = text;
    statusEl.className = 'status' + (kind ? ' ' + kind : '');
  }

  async function errorText(resp) {
    const text = await resp.text();
    try {
      const body = JSON.parse(text);
      return body.message || body.error || text;
    } catch (_) {
      return text || resp.statusText;
    }
  }

  async function admin(path) {
    const resp = await fetch(path, { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' });
    if (resp.status === 401) throw new Refused(await errorText(resp));
    return resp;
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  function stateBadge(a) {
    return el('span', { class: 'state' + (a.in_error ? ' error' : '') }, a.state);
  }

  function duration(ms) {
    if (ms == null) return '';
    const s = Math.round(ms / 1000);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  // The node an actor runs on: its own `node` field when the endpoint gives
  // one, else this node, else the node in its name (`machine/node[/n]`).
  function nodeOf(a, here) {
    return a.node || here || (a.name.split('/')[1] || '');
  }

  function renderNodes(cluster, actors, here) {
    const rows = [];
    const seen = new Set();
    if (cluster) {
      // /admin/cluster: this node first (membership "self"), then its peers.
      for (const n of cluster.nodes || []) {
        seen.add(n.name);
        const self = n.membership === 'self';
        const up = self || /connected/i.test(String(n.membership));
        rows.push(el('tr', { 'data-node': n.name },
          el('td', {}, n.name), el('td', {}, self ? 'this node' : 'peer'),
          el('td', {}, n.address || ''),
          el('td', {}, el('span', { class: up ? 'yes' : 'no' }, self ? 'up' : String(n.membership))),
          el('td', {}, n.reachable ? '' : (n.error || 'not reachable')),
          el('td', { class: 'num' }, n.last_rtt_ms == null ? '' : n.last_rtt_ms.toFixed(1) + ' ms'),
          el('td', { class: 'num' }, self ? '' : n.reconnects)));
      }
    }
    for (const a of actors) {
      const n = nodeOf(a, here);
      if (n && !seen.has(n)) {
        seen.add(n);
        rows.push(el('tr', { 'data-node': n }, el('td', {}, n), el('td', {}, cluster ? '' : 'this node'),
          el('td', {}, ''), el('td', {}, el('span', { class: 'yes' }, 'up')), el('td', {}, ''), el('td', {}, ''), el('td', {}, '')));
      }
    }
    nodesBody.replaceChildren(...rows);
    $('nodes-note').textContent = cluster ? '' :
      'This node runs without the cluster layer (candela run): no peers to show.';
  }

  function eta(secs) {
    if (secs == null) return '…';
    if (secs < 60) return secs + ' s';
    if (secs < 3600) return Math.floor(secs / 60) + ' min ' + (secs % 60) + ' s';
    return Math.floor(secs / 3600) + ' h ' + Math.floor((secs % 3600) / 60) + ' min';
  }

  // rows: [{ node, instrument, total_minutes, done_minutes, bars, failed_chunks, eta_secs, finished }]
  function renderBackfill(rows) {
    backfillBody.replaceChildren(...rows.map((b) => {
      const pct = b.total_minutes > 0 ? Math.floor((100 * b.done_minutes) / b.total_minutes) : 100;
      return el('tr', { 'data-instrument': b.instrument, 'data-done': b.done_minutes, 'data-total': b.total_minutes },
        el('td', {}, b.node), el('td', {}, b.instrument),
        el('td', { class: 'num' }, b.done_minutes + ' / ' + b.total_minutes + ' (' + pct + '%)'),
        el('td', { class: 'num' }, b.bars),
        el('td', { class: 'num' }, b.failed_chunks),
        el('td', {}, b.finished ? 'done' : eta(b.eta_secs)));
    }));
    $('backfill-note').textContent = rows.length ? '' : 'No backfill has run on these nodes.';
  }

  function renderActors(actors, here) {
    actorsBody.replaceChildren(...actors.map((a) => el('tr',
      { 'data-actor': a.name, 'data-machine': a.machine, 'data-state': a.state, 'data-restarts': a.restarts, 'data-stalls': a.stalls },
      el('td', {}, a.name), el('td', {}, nodeOf(a, here)), el('td', {}, a.machine), el('td', {}, stateBadge(a)),
      el('td', {}, el('span', { class: a.running ? 'yes' : 'no' }, a.running ? 'yes' : 'no')),
      el('td', { class: 'num' }, a.restarts),
      el('td', { class: 'num', title: a.last_stall_ms ? 'last stuck ' + new Date(a.last_stall_ms).toLocaleString() : '' },
        a.stalls ? a.stalls : ''),
      el('td', { class: 'num' }, a.transitions_total ?? ''),
      el('td', { class: 'num' }, a.rejected_total ?? ''),
      el('td', { class: 'wrap' }, a.last_failure || ''))));
    $('actor-count').textContent = '(' + actors.length + ')';
  }

  // Parses Graphviz's SVG and keeps only drawing: no scripts, no foreign
  // content, no event handlers, no links out.
  function cleanSvg(text) {
    const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    const svg = doc.documentElement;
    if (!svg || svg.nodeName.toLowerCase() !== 'svg' || doc.getElementsByTagName('parsererror').length) {
      throw new Error('the diagram is not SVG');
    }
    for (const bad of svg.querySelectorAll('script, foreignObject, iframe, a')) {
      if (bad.nodeName.toLowerCase() === 'a') bad.replaceWith(...bad.childNodes); else bad.remove();
    }
    for (const e of [svg, ...svg.querySelectorAll('*')]) {
      for (const attr of [...e.attributes]) {
        const n = attr.name.toLowerCase();
        if (n.startsWith('on') || n === 'href' || n === 'xlink:href' || n === 'style') e.removeAttribute(attr.name);
      }
    }
    svg.removeAttribute('width');
    svg.removeAttribute('height');
    return document.importNode(svg, true);
  }

  async function refreshDiagram(a, card) {
    const box = card.querySelector('.diagram');
    if (box.dataset.diagramState === a.state && box.dataset.machine === a.machine) return;
    const resp = await admin('/admin/actors/' + encodeURIComponent(a.name) + '/diagram?format=svg');
    if (!resp.ok) {
      box.replaceChildren(el('p', { class: 'note' }, 'diagram unavailable (' + resp.status + '): ' + (await errorText(resp))));
      box.dataset.diagramState = '';
      return;
    }
    box.replaceChildren(cleanSvg(await resp.text()));
    box.dataset.diagramState = a.state;
    box.dataset.machine = a.machine;
  }

  function cardFor(a, here) {
    let card = cardOf.get(a.name);
    if (!card) {
      card = el('article', { class: 'card' },
        el('header', {}, el('span', { class: 'name' }, a.name), el('span', { class: 'meta' }), el('span', { class: 'badge' })),
        el('div', { class: 'diagram', 'data-diagram-state': '' }, el('p', { class: 'note' }, 'loading diagram…')));
      // A click on the diagram widens the card to the whole row (and back).
      const widen = card;
      card.querySelector('.diagram').addEventListener('click', () => widen.classList.toggle('wide'));
      cardOf.set(a.name, card);
    }
    card.dataset.actor = a.name;
    card.dataset.machine = a.machine;
    card.dataset.state = a.state;
    card.querySelector('.meta').textContent =
      a.machine + ' · ' + nodeOf(a, here) + ' · restarts ' + a.restarts + (a.running ? '' : ' · not running');
    card.querySelector('.badge').replaceChildren(stateBadge(a));
    return card;
  }

  async function refresh() {
    if (running) return;
    running = true;
    clearTimeout(timer);
    try {
      if (!token) {
        say('This page needs the admin token (the value of the variable named by admin.token_env, ' +
          'CANDELA_ADMIN_TOKEN by default). Enter it above, or open the page as /ui/cluster#token=…');
        setStatus('no token', 'bad');
        return;
      }
      const resp = await admin('/admin/actors');
      if (!resp.ok) throw new Error('/admin/actors: ' + resp.status + ' ' + (await errorText(resp)));
      const actors = (await resp.json()).slice().sort((x, y) => x.name.localeCompare(y.name));
      let cluster = null;
      const cr = await admin('/admin/cluster');
      if (cr.ok) {
        try { cluster = JSON.parse(await cr.text()); } catch (_) { cluster = null; }
        if (cluster && cluster.error) cluster = null;
      } else if (cr.status !== 404) {
        throw new Error('/admin/cluster: ' + cr.status + ' ' + (await errorText(cr)));
      }
      const here = cluster ? cluster.node : '';
      renderNodes(cluster, actors, here);
      renderActors(actors, here);
      let backfill = [];
      if (cluster) {
        for (const n of cluster.nodes || []) {
          for (const b of n.backfill || []) backfill.push(Object.assign({ node: n.name }, b));
        }
      } else {
        const br = await admin('/admin/backfill');
        if (!br.ok) throw new Error('/admin/backfill: ' + br.status + ' ' + (await errorText(br)));
        backfill = (await br.json()).map((b) => Object.assign({ node: 'this node' }, b));
      }
      renderBackfill(backfill);
      const names = new Set(actors.map((a) => a.name));
      for (const [name, card] of cardOf) {
        if (!names.has(name)) { card.remove(); cardOf.delete(name); }
      }
      cards.replaceChildren(...actors.map((a) => cardFor(a, here)));
      for (const a of actors) await refreshDiagram(a, cardOf.get(a.name));
      say('');
      document.body.dataset.refreshed = String(Date.now());
      setStatus('updated ' + new Date().toLocaleTimeString(), 'live');
    } catch (err) {
      if (err instanceof Refused) {
        // Nothing stale stays on screen under a refused token.
        nodesBody.replaceChildren();
        actorsBody.replaceChildren();
        backfillBody.replaceChildren();
        cards.replaceChildren();
        cardOf.clear();
        $('actor-count').textContent = '';
        say('The admin API refused the token (401): ' + err.message +
          '. Enter the right token above; refreshing stops until then.', 'error');
        setStatus('token refused', 'bad');
        return; // no timer: wait for a new token
      }
      say(String(err.message || err) + ' — retrying.', 'error');
      setStatus('error', 'bad');
    } finally {
      running = false;
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = tokenEl.value.trim();
    if (token) sessionStorage.setItem(KEY, token); else sessionStorage.removeItem(KEY);
    tokenEl.value = '';
    refresh();
  });
  $('forget').addEventListener('click', () => {
    sessionStorage.removeItem(KEY);
    token = '';
    clearTimeout(timer);
    refresh();
  });
  window.addEventListener('hashchange', () => {
    token = takeToken();
    refresh();
  });

  token = takeToken();
  refresh();
})();
