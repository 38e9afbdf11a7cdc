/* mailfix local console: a small Adaptive Card renderer, and the page that talks to the bot.
 *
 * The renderer draws exactly what cards/templates/adaptive/*.json.j2 produce: TextBlock (with
 * the markdown subset Teams shows: **bold**, _italic_, backslash escapes, "- " and "1. " lists,
 * line breaks), RichTextBlock, Container, ColumnSet/Column, FactSet, ActionSet, Input.Text,
 * Input.ChoiceSet (compact), Action.Execute / Action.Submit, Action.ToggleVisibility, isVisible,
 * separator and spacing. Anything else falls back to its `fallback` or is left out.
 *
 * Cards carry text typed by people and answered by servers. Every string reaches the page
 * through textContent, attributes set one by one, or a form control's value: never as markup
 * (the page's Content-Security-Policy also requires Trusted Types, so an HTML sink would throw).
 * Links in card markdown are shown as the text they are, not followed.
 */
'use strict';

const AC = (() => {
  const ASCII_PUNCTUATION = /[!-/:-@[-`{-~]/;
  const WORD = /[\p{L}\p{N}]/u;
  let uid = 0;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // --- markdown subset ---------------------------------------------------------------------

  function tokenize(text) {
    const tokens = [];
    let buf = '';
    const flush = () => {
      if (buf) tokens.push({ text: buf });
      buf = '';
    };
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (ch === '\\' && i + 1 < text.length && ASCII_PUNCTUATION.test(text[i + 1])) {
        buf += text[++i]; // an escaped character is only ever text
      } else if (ch === '*' && text[i + 1] === '*') {
        flush();
        tokens.push({ mark: '**', before: text[i - 1] || ' ', after: text[i + 2] || ' ' });
        i++;
      } else if (ch === '*' || ch === '_') {
        flush();
        tokens.push({ mark: ch, before: text[i - 1] || ' ', after: text[i + 1] || ' ' });
      } else {
        buf += ch;
      }
    }
    flush();
    return tokens;
  }

  function canOpen(t) {
    return !/\s/.test(t.after) && !(t.mark === '_' && WORD.test(t.before));
  }

  function canClose(t) {
    return !/\s/.test(t.before) && !(t.mark === '_' && WORD.test(t.after));
  }

  function inline(parent, text) {
    const tokens = tokenize(text);
    const stack = [{ mark: null, node: parent }];
    const top = () => stack[stack.length - 1];
    tokens.forEach((t, i) => {
      if (t.text !== undefined) {
        top().node.append(document.createTextNode(t.text));
        return;
      }
      if (top().mark === t.mark && canClose(t)) {
        stack.pop();
        return;
      }
      const closer = canOpen(t) && tokens.slice(i + 1).some((u) => u.mark === t.mark && canClose(u));
      if (closer) {
        const node = el(t.mark === '**' ? 'strong' : 'em');
        top().node.append(node);
        stack.push({ mark: t.mark, node });
      } else {
        top().node.append(document.createTextNode(t.mark));
      }
    });
  }

  function markdown(parent, text) {
    let list = null;
    String(text).split(/\r?\n/).forEach((line) => {
      const bullet = /^\s*[-*+]\s+(.*)$/.exec(line);
      const numbered = /^\s*(\d{1,9})[.)]\s+(.*)$/.exec(line);
      if (bullet || numbered) {
        const tag = bullet ? 'ul' : 'ol';
        if (!list || list.tagName.toLowerCase() !== tag) {
          list = el(tag);
          if (numbered && numbered[1] !== '1') list.start = Number(numbered[1]);
          parent.append(list);
        }
        const li = el('li');
        inline(li, bullet ? bullet[1] : numbered[2]);
        list.append(li);
        return;
      }
      list = null;
      if (!line.trim()) return;
      const p = el('p');
      inline(p, line);
      parent.append(p);
    });
  }

  // --- elements ------------------------------------------------------------------------------

  const lower = (value) => String(value || '').toLowerCase();

  function common(node, spec, ctx) {
    if (typeof spec.id === 'string' && spec.id) ctx.ids.set(spec.id, node);
    if (spec.isVisible === false) node.hidden = true;
    if (spec.separator === true) node.classList.add('sep');
    if (spec.spacing) node.classList.add('sp-' + lower(spec.spacing).replace(/[^a-z]/g, ''));
    return node;
  }

  function textBlock(spec) {
    const node = el('div', 'ac-text');
    if (spec.wrap !== true) node.classList.add('nowrap');
    if (spec.size && lower(spec.size) !== 'default') node.classList.add('size-' + lower(spec.size));
    if (spec.weight && lower(spec.weight) !== 'default') node.classList.add('weight-' + lower(spec.weight));
    if (spec.color && lower(spec.color) !== 'default') node.classList.add('color-' + lower(spec.color));
    if (spec.isSubtle === true) node.classList.add('subtle');
    if (spec.horizontalAlignment) node.classList.add('align-' + lower(spec.horizontalAlignment));
    markdown(node, spec.text === undefined ? '' : spec.text);
    return node;
  }

  function richTextBlock(spec) {
    const node = el('p', 'ac-text');
    (Array.isArray(spec.inlines) ? spec.inlines : []).forEach((run) => {
      const text = typeof run === 'string' ? run : run && run.text;
      if (typeof text !== 'string') return;
      const span = el('span', null, text);
      if (run.weight && lower(run.weight) === 'bolder') span.classList.add('weight-bolder');
      if (run.italic === true) span.style.fontStyle = 'italic';
      if (run.strikethrough === true) span.style.textDecoration = 'line-through';
      if (run.isSubtle === true) span.classList.add('subtle');
      node.append(span);
    });
    return node;
  }

  function container(spec, ctx) {
    const node = el('div', 'ac-container');
    if (spec.style && lower(spec.style) !== 'default') node.classList.add('style-' + lower(spec.style));
    items(node, spec.items, ctx);
    return node;
  }

  function columnSet(spec, ctx) {
    const node = el('div', 'ac-columns');
    (Array.isArray(spec.columns) ? spec.columns : []).forEach((col) => {
      if (!col || typeof col !== 'object') return;
      const column = common(el('div', 'ac-column'), col, ctx);
      const width = col.width;
      if (typeof width === 'number' || /^\d+$/.test(String(width))) column.style.flex = `${Number(width)} 1 0`;
      else if (/^\d+px$/.test(String(width))) column.style.flex = `0 0 ${width}`;
      else if (lower(width) === 'auto') column.style.flex = '0 0 auto';
      else column.style.flex = '1 1 0';
      items(column, col.items, ctx);
      node.append(column);
    });
    return node;
  }

  function factSet(spec) {
    const node = el('dl', 'ac-facts');
    (Array.isArray(spec.facts) ? spec.facts : []).forEach((fact) => {
      if (!fact || typeof fact !== 'object') return;
      const dt = el('dt');
      inline(dt, String(fact.title ?? ''));
      const dd = el('dd');
      inline(dd, String(fact.value ?? ''));
      node.append(dt, dd);
    });
    return node;
  }

  function input(spec, ctx) {
    const node = el('div', 'ac-input');
    const id = `ac-input-${++uid}`;
    if (spec.label) {
      const label = el('label', null, spec.label);
      label.htmlFor = id;
      if (spec.isRequired === true) label.append(el('span', 'required', ' *'));
      node.append(label);
    }
    let control;
    if (spec.type === 'Input.ChoiceSet') {
      control = el('select');
      const hasValue = typeof spec.value === 'string' && spec.value !== '';
      if (!hasValue || spec.isRequired !== true) {
        const none = el('option', null, spec.placeholder || 'Choose…');
        none.value = '';
        control.append(none);
      }
      (Array.isArray(spec.choices) ? spec.choices : []).forEach((choice) => {
        if (!choice || typeof choice !== 'object') return;
        const option = el('option', null, choice.title ?? choice.value);
        option.value = String(choice.value ?? '');
        control.append(option);
      });
      control.value = hasValue ? spec.value : '';
    } else {
      control = el(spec.isMultiline === true ? 'textarea' : 'input');
      if (control.tagName === 'INPUT') {
        const kinds = { email: 'email', tel: 'tel', url: 'url' };
        control.type = kinds[lower(spec.style)] || 'text';
      }
      if (spec.placeholder) control.placeholder = String(spec.placeholder);
      if (Number.isInteger(spec.maxLength) && spec.maxLength > 0) control.maxLength = spec.maxLength;
      control.value = typeof spec.value === 'string' ? spec.value : '';
    }
    control.id = id;
    control.name = String(spec.id || id);
    if (spec.isRequired === true) control.setAttribute('aria-required', 'true');
    const problem = el('div', 'problem');
    problem.hidden = true;
    problem.setAttribute('role', 'alert');
    node.append(control, problem);
    if (typeof spec.id === 'string' && spec.id) ctx.inputs.push({ spec, control, problem, node });
    return node;
  }

  function actionSet(spec, ctx) {
    return actionRow(spec.actions, ctx);
  }

  const ELEMENTS = {
    TextBlock: textBlock,
    RichTextBlock: richTextBlock,
    Container: container,
    ColumnSet: columnSet,
    FactSet: factSet,
    ActionSet: actionSet,
    'Input.Text': input,
    'Input.ChoiceSet': input,
  };

  function element(spec, ctx) {
    if (!spec || typeof spec !== 'object') return null;
    const draw = ELEMENTS[spec.type];
    if (draw) return common(draw(spec, ctx), spec, ctx);
    if (spec.fallback && typeof spec.fallback === 'object') return element(spec.fallback, ctx);
    return null; // unknown, no fallback: left out, as Adaptive Card hosts do
  }

  function items(parent, list, ctx) {
    (Array.isArray(list) ? list : []).forEach((spec) => {
      const node = element(spec, ctx);
      if (node) parent.append(node);
    });
  }

  // --- actions -------------------------------------------------------------------------------

  function toggle(action, ctx, button) {
    const targets = Array.isArray(action.targetElements) ? action.targetElements : [];
    let shown = false;
    targets.forEach((target) => {
      const id = typeof target === 'string' ? target : target && target.elementId;
      const node = ctx.ids.get(id);
      if (!node) return;
      node.hidden = target && typeof target.isVisible === 'boolean' ? !target.isVisible : !node.hidden;
      shown = shown || !node.hidden;
    });
    button.setAttribute('aria-expanded', String(shown));
  }

  function actionButton(action, ctx) {
    if (!action || typeof action !== 'object') return null;
    const button = el('button', null, action.title || 'OK');
    button.type = 'button';
    if (action.style === 'positive' || action.style === 'destructive') button.classList.add(action.style);
    if (action.type === 'Action.Execute' || action.type === 'Action.Submit') {
      if (ctx.buttons.length > 0) button.classList.add('secondary');
      button.addEventListener('click', () => ctx.onAction(action, ctx));
      ctx.buttons.push(button);
      return button;
    }
    if (action.type === 'Action.ToggleVisibility') {
      button.classList.add('toggle');
      button.setAttribute('aria-expanded', 'false');
      button.addEventListener('click', () => toggle(action, ctx, button));
      return button;
    }
    if (action.fallback && typeof action.fallback === 'object') return actionButton(action.fallback, ctx);
    return null;
  }

  function actionRow(actions, ctx) {
    const row = el('div', 'ac-actions');
    (Array.isArray(actions) ? actions : []).forEach((action) => {
      const button = actionButton(action, ctx);
      if (button) row.append(button);
    });
    return row;
  }

  // --- the card ------------------------------------------------------------------------------

  function validate(ctx) {
    const values = {};
    let first = null;
    ctx.inputs.forEach(({ spec, control, problem, node }) => {
      if (node.closest('[hidden]')) return;
      const value = control.value;
      let bad = spec.isRequired === true && !value.trim();
      if (!bad && value && typeof spec.regex === 'string') {
        try {
          bad = !new RegExp(spec.regex, 'u').test(value);
        } catch (err) {
          bad = false; // a pattern this browser cannot compile: the server checks anyway
        }
      }
      problem.hidden = !bad;
      problem.textContent = bad ? spec.errorMessage || 'Please fill this in.' : '';
      control.setAttribute('aria-invalid', String(bad));
      if (bad && !first) first = control;
      values[spec.id] = value;
    });
    if (first) {
      first.focus();
      return null;
    }
    return values;
  }

  function render(card, onAction) {
    const root = el('div', 'ac-card');
    const ctx = {
      ids: new Map(),
      inputs: [],
      buttons: [],
      root,
      onAction: (action, c) => onAction(action, c),
      collect: () => validate(ctx),
      busy: (on) => ctx.buttons.forEach((b) => { b.disabled = on; }),
      problem: (text) => {
        let node = root.querySelector(':scope > .problem.card-problem');
        if (!node) {
          node = el('div', 'problem card-problem');
          node.setAttribute('role', 'alert');
          root.append(node);
        }
        node.textContent = text;
      },
    };
    if (!card || card.type !== 'AdaptiveCard') {
      root.append(el('div', 'ac-unknown', (card && card.fallbackText) || 'This card cannot be shown.'));
      return { node: root, ctx };
    }
    items(root, card.body, ctx);
    if (Array.isArray(card.actions) && card.actions.length) root.append(actionRow(card.actions, ctx));
    return { node: root, ctx };
  }

  return { render, markdown };
})();

const Console = (() => {
  const API = '/console/api/';
  const timeline = document.getElementById('timeline');
  const statusLine = document.getElementById('status');
  const composer = document.getElementById('composer');
  const say = document.getElementById('say');
  const shown = new Map(); // item key -> { rev, node }
  let homeTimer = null;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  async function call(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { 'X-Mailfix-Console': '1' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, init);
    let payload = null;
    try {
      payload = await response.json();
    } catch (err) {
      payload = null;
    }
    if (!response.ok) throw new Error((payload && payload.message) || `HTTP ${response.status}`);
    return payload;
  }

  function setStatus(kind, text) {
    statusLine.className = 'status ' + kind;
    statusLine.textContent = text;
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 160;
  }

  function draw(item) {
    if (item.kind === 'said') {
      const row = el('div', 'row me');
      row.append(el('div', 'bubble', item.text));
      return row;
    }
    const row = el('div', 'row bot');
    if (item.template === 'notice') row.classList.add('notice');
    row.dataset.template = String(item.template || '');
    const host = el('div', 'card-host');
    const { node } = AC.render(item.card, (action, ctx) => execute(item.key, action, ctx));
    host.append(node);
    row.append(el('div', 'avatar', '✉'), host);
    return row;
  }

  function upsert(item) {
    if (!item || typeof item.key !== 'string') return;
    const known = shown.get(item.key);
    if (known && known.rev >= item.rev) return; // an older view of a card already replaced
    const follow = nearBottom();
    const node = draw(item);
    if (known) known.node.replaceWith(node);
    else timeline.append(node);
    shown.set(item.key, { rev: item.rev, node });
    if (!known || follow) node.scrollIntoView({ block: 'end', behavior: 'smooth' });
    if (!known && item.template === 'intake') {
      const blank = [...node.querySelectorAll('input, select, textarea')].find((c) => !c.value);
      if (blank) blank.focus({ preventScroll: true });
    }
    if (['results', 'error', 'escalation'].includes(item.template)) refreshHomeSoon();
  }

  function reset(items) {
    shown.forEach(({ node }) => node.remove());
    shown.clear();
    (items || []).forEach(upsert);
  }

  async function execute(key, action, ctx) {
    const values = ctx.collect();
    if (values === null) return;
    const data = action.data && typeof action.data === 'object' ? action.data : {};
    const verb = action.type === 'Action.Submit' ? data.verb : action.verb;
    ctx.busy(true);
    try {
      const answer = await call('POST', 'execute', { verb, data, inputs: values, message: key });
      (answer.items || []).forEach(upsert);
    } catch (err) {
      ctx.problem(`Could not send that: ${err.message}`);
    } finally {
      ctx.busy(false);
    }
  }

  async function start(text) {
    try {
      const answer = await call('POST', 'start', { text });
      (answer.items || []).forEach(upsert);
    } catch (err) {
      setStatus('down', `could not send: ${err.message}`);
    }
  }

  async function refreshHome() {
    try {
      const answer = await call('GET', 'home');
      const home = document.getElementById('home');
      home.replaceChildren(AC.render(answer.card, () => {}).node);
    } catch (err) {
      /* the sidebar is a nicety; the timeline says what matters */
    }
  }

  function refreshHomeSoon() {
    clearTimeout(homeTimer);
    homeTimer = setTimeout(refreshHome, 300);
  }

  async function showSamples() {
    try {
      const info = await call('GET', 'info');
      const box = document.getElementById('samples');
      if (!info.samples || !info.samples.length) return;
      box.append(el('span', 'label', 'Try:'));
      info.samples.forEach(({ address, title }) => {
        const chip = el('button', 'chip', address);
        chip.type = 'button';
        chip.title = title;
        chip.addEventListener('click', () => start(`mailfix ${address}`));
        box.append(chip);
      });
    } catch (err) {
      /* no samples: typing works just as well */
    }
  }

  function listen() {
    const events = new EventSource(API + 'events');
    events.addEventListener('open', () => setStatus('live', 'live'));
    events.addEventListener('error', () => setStatus('down', 'reconnecting…'));
    events.addEventListener('snapshot', (e) => reset(JSON.parse(e.data).items));
    events.addEventListener('item', (e) => upsert(JSON.parse(e.data)));
  }

  composer.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = say.value.trim() || 'mailfix';
    say.value = '';
    start(text);
  });

  listen();
  showSamples();
  refreshHome();
  say.focus();
  return { start };
})();
