/* mailfix local console: the page that talks to the bot, drawing its replies as Teams and Slack would.
 *
 * Teams view: every card is drawn by Microsoft's official Adaptive Cards renderer (the npm package
 * `adaptivecards`, vendored under /console/vendor/, see vendor/README.md) with a Teams-like host
 * config (/console/hostconfig-teams.json). Action.Execute and Action.Submit go to the bot,
 * Action.ToggleVisibility and Action.ShowCard are the renderer's own.
 * Slack view: the same replies as the Block Kit messages Slack would get, drawn by the small
 * Block Kit preview below (sections, fields, context, header, divider, actions, rich text, mrkdwn).
 *
 * Cards carry text typed by people and answered by servers. Every string reaches the page as a
 * text node, through textContent, or as a form control's value. The one place the renderer
 * accepts HTML is markdown: `onProcessMarkdown` below builds the Teams markdown subset as DOM
 * nodes (createElement + text nodes) and gives the renderer that DOM serialised by `serialize`,
 * which knows six tags and escapes all text. Links are shown as the text they are, never followed.
 * The page's Content-Security-Policy requires Trusted Types, so any other HTML sink would throw.
 */
'use strict';

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// --- Adaptive Card markdown (what Teams shows: **bold**, _italic_, escapes, lists) -----------------

const Markdown = (() => {
  const ASCII_PUNCTUATION = /[!-/:-@[-`{-~]/;
  const WORD = /[\p{L}\p{N}]/u;
  const TAGS = new Set(['p', 'strong', 'em', 'ul', 'ol', 'li']);

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

  const canOpen = (t) => !/\s/.test(t.after) && !(t.mark === '_' && WORD.test(t.before));
  const canClose = (t) => !/\s/.test(t.before) && !(t.mark === '_' && WORD.test(t.after));

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

  /** Markdown `text` as DOM nodes appended to `parent` (p, ul/ol/li, strong, em, text). */
  function build(parent, text) {
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
    return parent;
  }

  const escapeText = (s) =>
    s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\u00a0/g, '&nbsp;');

  /** The HTML of a node `build` made: six known tags, text always escaped, else an error. */
  function serialize(node) {
    if (node.nodeType === Node.TEXT_NODE) return escapeText(node.data);
    const tag = node.nodeType === Node.ELEMENT_NODE ? node.tagName.toLowerCase() : '';
    if (!TAGS.has(tag)) throw new Error(`markdown made an unexpected <${tag}>`);
    const start = tag === 'ol' && node.start !== 1 ? ` start="${Math.trunc(Number(node.start))}"` : '';
    return `<${tag}${start}>${[...node.childNodes].map(serialize).join('')}</${tag}>`;
  }

  function toHtml(text) {
    const box = build(document.createElement('div'), text);
    return [...box.childNodes].map(serialize).join('');
  }

  return { build, toHtml };
})();

// --- Teams: the official Adaptive Cards renderer -----------------------------------------------

const Teams = (() => {
  const AC = window.AdaptiveCards;
  let hostConfig = null;

  function setup(json) {
    if (!AC) throw new Error('the Adaptive Cards renderer did not load');
    AC.GlobalSettings.allowMarkForTextHighlighting = false;
    AC.AdaptiveCard.onProcessMarkdown = (text, result) => {
      result.outputHtml = Markdown.toHtml(text);
      result.didProcess = true;
    };
    hostConfig = new AC.HostConfig(json);
  }

  function hideLabel(title) {
    // "Show trace (3 steps)" -> "Hide trace"; other titles keep their words.
    if (!/^show\b/i.test(title)) return title;
    return title.replace(/^show\b/i, 'Hide').replace(/\s*\([^()]*\)\s*$/, '');
  }

  function afterToggle(action) {
    const button = action.renderedElement;
    const root = action.parent && action.parent.getRootElement();
    if (!button || !root) return;
    if (button.dataset.title === undefined) button.dataset.title = action.title || '';
    const shown = Object.keys(action.targetElements || {}).some((id) => {
      const target = root.getElementById(id);
      return Boolean(target && target.isVisible);
    });
    const label = shown ? hideLabel(button.dataset.title) : button.dataset.title;
    const walker = document.createTreeWalker(button, NodeFilter.SHOW_TEXT);
    let textNode = null;
    for (let n = walker.nextNode(); n; n = walker.nextNode()) if (n.data.trim()) textNode = n;
    if (textNode) textNode.data = label;
    else button.textContent = label;
    if (button.hasAttribute('aria-label')) button.setAttribute('aria-label', label);
    if (button.title) button.title = label;
    button.setAttribute('aria-expanded', String(shown));
  }

  /** Draw `json`; `onAction(action, card)` gets Action.Execute / Action.Submit presses. */
  function render(json, onAction) {
    const card = new AC.AdaptiveCard();
    card.hostConfig = hostConfig;
    card.onExecuteAction = (action) => {
      const type = action.getJsonTypeName();
      if (type === 'Action.ToggleVisibility') {
        queueMicrotask(() => afterToggle(action)); // the renderer toggles right after this
      } else if (type === 'Action.Execute' || type === 'Action.Submit') {
        onAction(action, card);
      }
    };
    const context = new AC.SerializationContext();
    card.parse(json, context);
    for (let i = 0; i < context.eventCount; i++) {
      const event = context.getEventAt(i);
      console.warn('adaptive card:', event.message); // eslint-disable-line no-console
    }
    const node = card.render();
    if (!node) return { node: el('div', 'ac-unknown', (json && json.fallbackText) || 'This card cannot be shown.'), card };
    return { node, card };
  }

  function inputs(card) {
    const values = {};
    card.getAllInputs().forEach((input) => {
      if (input.id) values[input.id] = input.value === undefined || input.value === null ? '' : String(input.value);
    });
    return values;
  }

  return { setup, render, inputs };
})();

// --- Slack: a Block Kit preview ----------------------------------------------------------------

const BlockKit = (() => {
  const ZWSP = '\u200b';
  const WORD = /[\p{L}\p{N}]/u;
  const EMPHASIS = { '*': 'strong', _: 'em', '~': 's' };

  const decode = (s) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

  function opens(text, i) {
    const before = text[i - 1];
    const after = text[i + 1];
    if (after === undefined || /\s/.test(after) || after === ZWSP || after === text[i]) return false;
    return before === undefined || (!WORD.test(before) && before !== ZWSP);
  }

  function closer(text, i) {
    for (let j = i + 2; j < text.length; j++) {
      if (text[j] === '\n') return -1;
      if (text[j] !== text[i]) continue;
      const before = text[j - 1];
      const after = text[j + 1];
      if (/\s/.test(before) || before === ZWSP) continue;
      if (after !== undefined && (WORD.test(after) || after === ZWSP)) continue;
      return j;
    }
    return -1;
  }

  function link(inner) {
    // <https://x|label>, <mailto:a@b|a@b>, <@U123>, <#C123|name>, <!here>: shown, never followed.
    const [target, label] = inner.split('|', 2);
    if (target.startsWith('@')) return el('span', 'bk-mention', '@' + (label || target.slice(1)));
    if (target.startsWith('#')) return el('span', 'bk-mention', '#' + (label || target.slice(1)));
    if (target.startsWith('!')) return el('span', 'bk-mention', '@' + (label || target.slice(1).split('^')[0]));
    const node = el('span', 'bk-link', decode(label || target));
    node.title = decode(target);
    return node;
  }

  function inline(parent, text) {
    let buf = '';
    const flush = () => {
      if (buf) parent.append(document.createTextNode(decode(buf)));
      buf = '';
    };
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (ch === '`') {
        const end = text.indexOf('`', i + 1);
        if (end > i + 1) {
          flush();
          parent.append(el('code', 'bk-code', decode(text.slice(i + 1, end))));
          i = end;
          continue;
        }
      } else if (ch === '<') {
        const end = text.indexOf('>', i + 1);
        if (end > i + 1) {
          flush();
          parent.append(link(text.slice(i + 1, end)));
          i = end;
          continue;
        }
      } else if (EMPHASIS[ch] && opens(text, i)) {
        const end = closer(text, i);
        if (end > 0) {
          flush();
          const node = el(EMPHASIS[ch]);
          inline(node, text.slice(i + 1, end));
          parent.append(node);
          i = end;
          continue;
        }
      }
      buf += ch;
    }
    flush();
  }

  /** Slack mrkdwn as DOM: ```pre```, then lines (> quotes), then inline marks. */
  function mrkdwn(parent, text) {
    String(text).split(/```/).forEach((part, n) => {
      if (n % 2 === 1) {
        parent.append(el('pre', 'bk-pre', decode(part.replace(/^\n/, ''))));
        return;
      }
      part.split('\n').forEach((line, k, lines) => {
        const quote = /^(?:&gt;|>) ?(.*)$/.exec(line);
        if (quote) {
          const q = el('span', 'bk-quote');
          inline(q, quote[1]);
          parent.append(q);
        } else {
          inline(parent, line);
          if (k < lines.length - 1) parent.append(el('br'));
        }
      });
    });
    return parent;
  }

  function textObject(obj, className) {
    const node = el('div', className);
    if (!obj || typeof obj !== 'object') return node;
    if (obj.type === 'mrkdwn') mrkdwn(node, String(obj.text ?? ''));
    else node.textContent = String(obj.text ?? '');
    return node;
  }

  function button(element, onButton) {
    const node = el('button', 'bk-button', (element.text && element.text.text) || '');
    node.type = 'button';
    if (element.style === 'primary' || element.style === 'danger') node.classList.add(element.style);
    node.addEventListener('click', () => onButton(element, node));
    return node;
  }

  function interactive(element, onButton) {
    if (!element || typeof element !== 'object') return null;
    if (element.type === 'button') return button(element, onButton);
    if (element.type === 'image') return el('span', 'bk-image', element.alt_text || 'image');
    const label = (element.placeholder && element.placeholder.text) || element.type;
    const node = el('button', 'bk-button bk-other', label);
    node.type = 'button';
    node.disabled = true;
    node.title = 'Not shown in this preview';
    return node;
  }

  function richText(block) {
    const node = el('div', 'bk-text');
    const runs = (parent, elements) => (Array.isArray(elements) ? elements : []).forEach((r) => {
      if (!r || typeof r !== 'object') return;
      let text = r.text;
      if (r.type === 'link') text = r.text || r.url;
      else if (r.type === 'emoji') text = `:${r.name}:`;
      else if (r.type === 'user') text = `@${r.user_id}`;
      else if (r.type === 'channel') text = `#${r.channel_id}`;
      if (typeof text !== 'string') return;
      const s = r.style || {};
      let span = el(s.code ? 'code' : 'span', s.code ? 'bk-code' : null, text);
      if (s.bold) span = wrap('strong', span);
      if (s.italic) span = wrap('em', span);
      if (s.strike) span = wrap('s', span);
      parent.append(span);
    });
    const wrap = (tag, child) => {
      const outer = el(tag);
      outer.append(child);
      return outer;
    };
    (Array.isArray(block.elements) ? block.elements : []).forEach((part) => {
      if (!part || typeof part !== 'object') return;
      if (part.type === 'rich_text_list') {
        const list = el(part.style === 'ordered' ? 'ol' : 'ul');
        (part.elements || []).forEach((item) => {
          const li = el('li');
          runs(li, item && item.elements);
          list.append(li);
        });
        node.append(list);
      } else {
        const tag = { rich_text_preformatted: 'pre', rich_text_quote: 'blockquote' }[part.type] || 'div';
        const box = el(tag, tag === 'pre' ? 'bk-pre' : tag === 'blockquote' ? 'bk-quote' : null);
        runs(box, part.elements);
        node.append(box);
      }
    });
    return node;
  }

  function block(spec, onButton) {
    if (!spec || typeof spec !== 'object') return null;
    switch (spec.type) {
      case 'header':
        return textObject(spec.text, 'bk-header');
      case 'divider':
        return el('hr', 'bk-divider');
      case 'section': {
        const node = el('div', 'bk-section');
        const main = el('div', 'bk-main');
        if (spec.text) main.append(textObject(spec.text, 'bk-text'));
        if (Array.isArray(spec.fields) && spec.fields.length) {
          const fields = el('div', 'bk-fields');
          spec.fields.forEach((f) => fields.append(textObject(f, 'bk-text')));
          main.append(fields);
        }
        node.append(main);
        const accessory = interactive(spec.accessory, onButton);
        if (accessory) {
          const side = el('div', 'bk-accessory');
          side.append(accessory);
          node.append(side);
        }
        return node;
      }
      case 'context': {
        const node = el('div', 'bk-context');
        (Array.isArray(spec.elements) ? spec.elements : []).forEach((e) => {
          if (e && e.type === 'image') node.append(el('span', 'bk-image', e.alt_text || ''));
          else node.append(textObject(e, 'bk-context-text'));
        });
        return node;
      }
      case 'actions': {
        const node = el('div', 'bk-actions');
        (Array.isArray(spec.elements) ? spec.elements : []).forEach((e) => {
          const control = interactive(e, onButton);
          if (control) node.append(control);
        });
        return node;
      }
      case 'input': {
        const node = el('div', 'bk-input');
        const element = spec.element || {};
        const label = el('label', null, (spec.label && spec.label.text) || '');
        node.append(label);
        if (element.type === 'plain_text_input') {
          const input = el('input');
          input.type = 'text';
          input.id = `bk-${spec.block_id || 'input'}-${Math.random().toString(36).slice(2, 8)}`;
          label.htmlFor = input.id;
          input.dataset.actionId = String(element.action_id || '');
          if (element.max_length) input.maxLength = Number(element.max_length);
          if (element.placeholder && element.placeholder.text) input.placeholder = String(element.placeholder.text);
          node.append(input);
        } else {
          node.append(interactive(element, onButton));
        }
        return node;
      }
      case 'rich_text':
        return richText(spec);
      case 'image':
        return el('div', 'bk-image', spec.alt_text || 'image');
      default:
        return el('div', 'bk-unknown', 'This content can’t be displayed.');
    }
  }

  /** A Slack message (`{text, blocks}`) or modal view (`{type: "modal", title, blocks}`) as Slack
   * draws it; `onButton(element, node)` on button clicks. */
  function render(payload, onButton) {
    const modal = Boolean(payload && payload.type === 'modal');
    const node = el('div', modal ? 'bk-message bk-modal' : 'bk-message');
    const head = el('div', 'bk-head');
    if (modal) {
      head.append(el('span', 'bk-modal-title', (payload.title && payload.title.text) || 'mailfix'));
      head.append(el('span', 'bk-modal-note', 'opens as a pop-up window in Slack'));
    } else {
      head.append(el('span', 'bk-name', 'mailfix'), el('span', 'bk-app', 'APP'));
    }
    node.append(head);
    const blocks = payload && Array.isArray(payload.blocks) ? payload.blocks : [];
    if (!blocks.length) node.append(textObject({ type: 'mrkdwn', text: (payload && payload.text) || '' }, 'bk-text'));
    blocks.forEach((spec) => {
      const drawn = block(spec, onButton);
      if (drawn) node.append(drawn);
    });
    return node;
  }

  return { render, mrkdwn };
})();

// --- the page ------------------------------------------------------------------------------------

const Page = (() => {
  const API = '/console/api/';
  const timeline = document.getElementById('timeline');
  const statusLine = document.getElementById('status');
  const composer = document.getElementById('composer');
  const say = document.getElementById('say');
  const views = [...document.querySelectorAll('[data-view]')];
  const panes = [...document.querySelectorAll('[data-pane]')];
  const board = document.getElementById('board');
  const shown = new Map(); // item key -> { item, node }
  const posted = new Map(); // helpdesk channel: card key -> { item, node }
  let view = 'teams';
  let pane = 'person';
  let roles = { helpdesk: 'the helpdesk agent', approver: 'the approver' };
  let homeTimer = null;

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

  function problem(host, text) {
    let node = host.querySelector(':scope > .card-problem');
    if (!node) {
      node = el('div', 'problem card-problem');
      node.setAttribute('role', 'alert');
      host.append(node);
    }
    node.textContent = text;
  }

  function setBusy(host, on) {
    // Buttons the card itself disabled stay disabled when the request is over.
    host.querySelectorAll('button').forEach((b) => {
      if (on && !b.disabled) {
        b.disabled = true;
        b.dataset.busy = '1';
      } else if (!on && b.dataset.busy) {
        b.disabled = false;
        delete b.dataset.busy;
      }
    });
    host.setAttribute('aria-busy', String(on));
  }

  async function send(host, body) {
    setBusy(host, true);
    try {
      const answer = await call('POST', 'execute', body);
      (answer.items || []).forEach(upsert);
    } catch (err) {
      problem(host, `Could not send that: ${err.message}`);
    } finally {
      if (host.isConnected) setBusy(host, false);
    }
  }

  function teamsCard(item, host) {
    const { node } = Teams.render(item.card, (action, card) => {
      if (item.closed) return;
      const data = action.data && typeof action.data === 'object' ? { ...action.data } : {};
      const verb = action.getJsonTypeName() === 'Action.Execute' ? action.verb : data.verb;
      send(host, { verb, data, inputs: Teams.inputs(card), message: item.key });
    });
    return node;
  }

  function slackMessage(item, host) {
    return BlockKit.render(item.slack, (element) => {
      const data = element.value ? { diagnosis_id: String(element.value) } : {};
      send(host, { verb: element.action_id, data, inputs: {}, message: item.key });
    });
  }

  function close(host) {
    host.classList.add('closed');
    host.querySelectorAll('input, select, textarea, button').forEach((c) => {
      c.disabled = true;
    });
    host.prepend(el('div', 'closed-note', 'Closed: you started a newer check. Use the newest form.'));
  }

  function draw(item) {
    if (item.kind === 'said') {
      const row = el('div', 'row me');
      row.append(el('div', 'bubble', item.text));
      return row;
    }
    const row = el('div', 'row bot');
    row.dataset.template = String(item.template || '');
    if (item.template === 'notice') row.classList.add('notice');
    const host = el('div', 'card-host');
    const slack = view === 'slack' && item.slack;
    row.classList.add(slack ? 'slack' : 'teams');
    if (slack) {
      host.append(slackMessage(item, host));
    } else {
      if (view === 'slack' && item.template === 'intake') {
        host.append(el('div', 'view-note', 'In Slack this form opens as a pop-up window (a modal).'));
      }
      host.append(teamsCard(item, host));
    }
    if (item.closed) close(host);
    row.append(el('div', 'avatar', '✉'), host);
    return row;
  }

  function upsert(item) {
    if (!item || typeof item.key !== 'string') return;
    const known = shown.get(item.key);
    if (known && known.item.rev >= item.rev) return; // an older view of a card already replaced
    const follow = nearBottom();
    const node = draw(item);
    if (known) known.node.replaceWith(node);
    else timeline.append(node);
    shown.set(item.key, { item, node });
    if (!known || follow) node.scrollIntoView({ block: 'end', behavior: 'smooth' });
    if (!known && item.template === 'intake' && !item.closed) {
      const blank = [...node.querySelectorAll('input, select, textarea')].find((c) => !c.value);
      if (blank) blank.focus({ preventScroll: true });
    }
    if (['results', 'error', 'escalation'].includes(item.template)) refreshHomeSoon();
  }

  function redraw() {
    shown.forEach((entry) => {
      const node = draw(entry.item);
      entry.node.replaceWith(node);
      entry.node = node;
    });
  }

  function reset(items) {
    shown.forEach(({ node }) => node.remove());
    shown.clear();
    (items || []).forEach(upsert);
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
      home.replaceChildren(Teams.render(answer.card, () => {}).node);
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

  function setView(name) {
    view = name === 'slack' ? 'slack' : 'teams';
    views.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.view === view)));
    document.body.dataset.view = view;
    try {
      localStorage.setItem('mailfix.view', view);
    } catch (err) {
      /* private mode: the choice lasts until reload */
    }
    redraw();
    redrawBoard();
  }

  // --- the helpdesk channel: the Helpdesk and Approver views -------------------------------------

  const INTRO = {
    helpdesk: () => [
      `The helpdesk channel as everyone in it sees it. You are ${roles.helpdesk} of the helpdesk: `
        + 'Claim a case, ask the person a question, resolve it.',
      'Teams shows Approve and Reject only to approvers (switch to the Approver view). '
        + 'Slack shows them to everyone, and mailfix refuses anyone who is not an approver.',
    ],
    approver: () => [
      `The same channel as an approver sees it in Teams. You are ${roles.approver}, an approver: `
        + 'Approve applies the fix to the sandbox tenant, then mailfix checks again and tells the person.',
    ],
  };

  function setPane(name) {
    pane = ['helpdesk', 'approver'].includes(name) ? name : 'person';
    panes.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.pane === pane)));
    document.body.dataset.pane = pane;
    document.getElementById('person-pane').hidden = pane !== 'person';
    document.getElementById('board-pane').hidden = pane === 'person';
    const intro = document.getElementById('board-intro');
    intro.replaceChildren(...(INTRO[pane] ? INTRO[pane]() : []).map((t) => el('p', null, t)));
    try {
      localStorage.setItem('mailfix.pane', pane);
    } catch (err) {
      /* private mode */
    }
    redrawBoard();
  }

  function note(host, text, ok) {
    if (!host || !text) return;
    let node = host.querySelector(':scope > .card-note');
    if (!node) {
      node = el('div', 'card-note');
      node.setAttribute('role', ok ? 'status' : 'alert');
      host.append(node);
    }
    node.classList.toggle('refused', !ok);
    node.textContent = text;
  }

  async function act(host, key, body) {
    setBusy(host, true);
    try {
      const answer = await call('POST', 'helpdesk', { ...body, role: pane });
      (answer.items || []).forEach(upsertBoard);
      const current = posted.get(key);
      note(current ? current.node.querySelector('.card-host') : host, answer.message, answer.ok !== false);
    } catch (err) {
      problem(host, `Could not send that: ${err.message}`);
    } finally {
      if (host.isConnected) setBusy(host, false);
    }
  }

  function slackInputs(host) {
    const values = {};
    host.querySelectorAll('.bk-input input').forEach((input) => {
      if (input.dataset.actionId) values[input.dataset.actionId] = input.value;
    });
    return values;
  }

  function drawPosted(item) {
    const row = el('div', 'row bot');
    row.dataset.template = String(item.template || '');
    row.dataset.case = String(item.case ?? '');
    const host = el('div', 'card-host');
    const slack = view === 'slack' && item.slack;
    row.classList.add(slack ? 'slack' : 'teams');
    if (slack) {
      host.append(BlockKit.render(item.slack, (element) => {
        const verb = String(element.action_id || '');
        const value = String(element.value || '');
        const data = verb.startsWith('mailfix.fix.') ? { proposal: value } : { case: value };
        act(host, item.key, { verb, data, inputs: slackInputs(host) });
      }));
    } else {
      const json = pane === 'approver' ? item.approver_card : item.card;
      const { node } = Teams.render(json, (action, card) => {
        const data = action.data && typeof action.data === 'object' ? { ...action.data } : {};
        const verb = action.getJsonTypeName() === 'Action.Execute' ? action.verb : data.verb;
        act(host, item.key, { verb, data, inputs: Teams.inputs(card) });
      });
      host.append(node);
    }
    row.append(el('div', 'avatar', '✉'), host);
    return row;
  }

  function upsertBoard(item) {
    if (!item || typeof item.key !== 'string') return;
    const known = posted.get(item.key);
    if (known && known.item.rev >= item.rev) return;
    const node = drawPosted(item);
    if (known) known.node.replaceWith(node);
    else board.prepend(node); // the newest case on top, like a channel read from the top
    posted.set(item.key, { item, node });
    document.getElementById('board-empty').hidden = posted.size > 0;
    const cases = [...posted.values()].filter((e) => e.item.template === 'case').length;
    document.getElementById('board-count').textContent = cases ? String(cases) : '';
  }

  function redrawBoard() {
    posted.forEach((entry) => {
      const node = drawPosted(entry.item);
      entry.node.replaceWith(node);
      entry.node = node;
    });
  }

  async function loadBoard() {
    try {
      const answer = await call('GET', 'board');
      if (answer.roles) roles = answer.roles;
      (answer.items || []).forEach(upsertBoard);
      setPane(pane);
    } catch (err) {
      /* the person's view works without it */
    }
  }

  function listen() {
    const events = new EventSource(API + 'events');
    events.addEventListener('open', () => {
      setStatus('live', 'live');
      loadBoard();
    });
    events.addEventListener('error', () => setStatus('down', 'reconnecting…'));
    events.addEventListener('snapshot', (e) => reset(JSON.parse(e.data).items));
    events.addEventListener('item', (e) => upsert(JSON.parse(e.data)));
    events.addEventListener('board', (e) => upsertBoard(JSON.parse(e.data)));
  }

  async function boot() {
    try {
      const response = await fetch('/console/hostconfig-teams.json', { credentials: 'same-origin' });
      Teams.setup(await response.json());
    } catch (err) {
      setStatus('down', `cannot draw cards: ${err.message}`);
      return;
    }
    composer.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = say.value.trim() || 'mailfix';
      say.value = '';
      start(text);
    });
    views.forEach((b) => b.addEventListener('click', () => setView(b.dataset.view)));
    panes.forEach((b) => b.addEventListener('click', () => setPane(b.dataset.pane)));
    let savedPane = null;
    try {
      savedPane = localStorage.getItem('mailfix.pane');
    } catch (err) {
      savedPane = null;
    }
    setPane(savedPane || 'person');
    let saved = null;
    try {
      saved = localStorage.getItem('mailfix.view');
    } catch (err) {
      saved = null;
    }
    setView(saved || 'teams');
    listen();
    showSamples();
    refreshHome();
    say.focus();
  }

  boot();
  return { start };
})();
