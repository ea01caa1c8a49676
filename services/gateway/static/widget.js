/* careloop web chat widget. Embed with one tag:
 *   <script src="https://YOUR-CARELOOP/webchat/widget.js" defer></script>
 * (data-careloop-mode="page" fills the page instead of showing a launcher button.)
 * Plain JavaScript, no build step, no external requests. The session token is kept in
 * sessionStorage, so a reload resumes the same conversation from the last event seen. */
(function () {
  'use strict';
  var script = document.currentScript;
  if (!script || window.__careloopWebchat) return;
  window.__careloopWebchat = true;
  var API = new URL('./', script.src).href;
  var PAGE = script.getAttribute('data-careloop-mode') === 'page';
  var KEY = 'careloop-webchat:' + API;
  var MAX_ITEMS = 200;
  var LANGS = [['en', 'English'], ['es', 'Español'], ['fr', 'Français'], ['de', 'Deutsch'], ['pt', 'Português'], ['ar', 'العربية']];
  var T = {
    en: { open: 'Open chat', close: 'Close chat', lang: 'Language', level: 'Reading level', easy: 'Simple words', standard: 'Standard', input: 'Your message', ph: 'Type your question…', send: 'Send', typing: 'careloop is typing…', log: 'Messages', answers: 'Answers', error: 'Sorry, something went wrong. Please send your message again.', gap: 'Some earlier messages cannot be shown.', failed: 'Not sent. Check your connection.', retry: 'Try again', fresh: 'Your chat session ended. A new one has started.' },
    es: { open: 'Abrir chat', close: 'Cerrar chat', lang: 'Idioma', level: 'Nivel de lectura', easy: 'Palabras sencillas', standard: 'Estándar', input: 'Su mensaje', ph: 'Escriba su pregunta…', send: 'Enviar', typing: 'careloop está escribiendo…', log: 'Mensajes', answers: 'Respuestas', error: 'Lo sentimos, algo salió mal. Envíe su mensaje de nuevo.', gap: 'Algunos mensajes anteriores no se pueden mostrar.', failed: 'No enviado. Revise su conexión.', retry: 'Reintentar', fresh: 'Su sesión terminó. Empezó una nueva.' },
    fr: { open: 'Ouvrir le chat', close: 'Fermer le chat', lang: 'Langue', level: 'Niveau de lecture', easy: 'Mots simples', standard: 'Standard', input: 'Votre message', ph: 'Écrivez votre question…', send: 'Envoyer', typing: 'careloop écrit…', log: 'Messages', answers: 'Réponses', error: 'Désolé, un problème est survenu. Renvoyez votre message.', gap: 'Certains messages précédents ne peuvent pas être affichés.', failed: 'Non envoyé. Vérifiez votre connexion.', retry: 'Réessayer', fresh: 'Votre session est terminée. Une nouvelle a commencé.' },
    de: { open: 'Chat öffnen', close: 'Chat schließen', lang: 'Sprache', level: 'Lesestufe', easy: 'Einfache Wörter', standard: 'Standard', input: 'Ihre Nachricht', ph: 'Schreiben Sie Ihre Frage…', send: 'Senden', typing: 'careloop schreibt…', log: 'Nachrichten', answers: 'Antworten', error: 'Leider ist etwas schiefgegangen. Bitte senden Sie Ihre Nachricht noch einmal.', gap: 'Einige frühere Nachrichten können nicht angezeigt werden.', failed: 'Nicht gesendet. Prüfen Sie Ihre Verbindung.', retry: 'Erneut versuchen', fresh: 'Ihre Sitzung ist abgelaufen. Eine neue hat begonnen.' },
    pt: { open: 'Abrir chat', close: 'Fechar chat', lang: 'Idioma', level: 'Nível de leitura', easy: 'Palavras simples', standard: 'Padrão', input: 'Sua mensagem', ph: 'Escreva sua pergunta…', send: 'Enviar', typing: 'careloop está escrevendo…', log: 'Mensagens', answers: 'Respostas', error: 'Desculpe, algo deu errado. Envie sua mensagem de novo.', gap: 'Algumas mensagens anteriores não podem ser mostradas.', failed: 'Não enviado. Verifique sua conexão.', retry: 'Tentar de novo', fresh: 'Sua sessão terminou. Uma nova começou.' },
    ar: { open: 'افتح المحادثة', close: 'أغلق المحادثة', lang: 'اللغة', level: 'مستوى القراءة', easy: 'كلمات بسيطة', standard: 'عادي', input: 'رسالتك', ph: 'اكتب سؤالك…', send: 'إرسال', typing: 'careloop يكتب…', log: 'الرسائل', answers: 'الإجابات', error: 'عذرا، حدث خطأ. أرسل رسالتك مرة أخرى.', gap: 'لا يمكن عرض بعض الرسائل السابقة.', failed: 'لم تُرسل. تحقق من اتصالك.', retry: 'حاول مرة أخرى', fresh: 'انتهت جلستك. بدأت جلسة جديدة.' }
  };
  function t(k) { return (T[S.lang] && T[S.lang][k]) || T.en[k]; }

  // Session state, kept across reloads of this tab.
  var S = load() || {};
  S.items = S.items || [];
  S.lang = S.lang || guessLang();
  S.level = S.level || 'easy';
  function load() { try { return JSON.parse(sessionStorage.getItem(KEY)); } catch (e) { return null; } }
  function save() {
    if (S.items.length > MAX_ITEMS) S.items = S.items.slice(-MAX_ITEMS);
    try { sessionStorage.setItem(KEY, JSON.stringify(S)); } catch (e) { /* private mode: no resume */ }
  }
  function guessLang() {
    var l = (navigator.language || 'en').slice(0, 2).toLowerCase();
    return LANGS.some(function (x) { return x[0] === l; }) ? l : 'en';
  }

  var CSS = ':host{all:initial}*{box-sizing:border-box;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans Arabic",sans-serif}' +
    '.launcher{position:fixed;bottom:16px;inset-inline-end:16px;width:56px;height:56px;border-radius:50%;border:0;background:#0b5cad;color:#fff;font-size:26px;cursor:pointer;box-shadow:0 2px 8px rgba(0,0,0,.3);z-index:2147483000}' +
    '.panel{position:fixed;bottom:84px;inset-inline-end:16px;width:min(380px,calc(100vw - 32px));height:min(600px,calc(100vh - 100px));display:flex;flex-direction:column;background:#fff;color:#1a1a1a;border-radius:12px;box-shadow:0 4px 24px rgba(0,0,0,.25);overflow:hidden;z-index:2147483000;font-size:16px}' +
    '.panel[hidden]{display:none}.page{inset:0;width:100%;height:100%;max-width:760px;margin:0 auto;border-radius:0;bottom:0}' +
    'header{display:flex;flex-wrap:wrap;gap:6px 10px;align-items:center;padding:10px 12px;background:#0b5cad;color:#fff}' +
    'h2{margin:0;font-size:18px;flex:1 1 auto}header label{font-size:13px;display:flex;flex-direction:column;gap:2px}' +
    'select{font-size:14px;padding:4px;border-radius:6px;border:1px solid #ccd;max-width:140px}' +
    '.close{background:transparent;border:0;color:#fff;font-size:26px;line-height:1;cursor:pointer;padding:4px 8px}' +
    '.log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f7f9fb}' +
    '.msg{max-width:85%;padding:8px 12px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere;line-height:1.4}' +
    '.bot{align-self:flex-start;background:#fff;border:1px solid #dde3ea}.me{align-self:flex-end;background:#0b5cad;color:#fff}' +
    '.draft{opacity:.75;border-style:dashed}.note{align-self:center;font-size:13px;color:#5a2a00;background:#fff4e5;padding:6px 10px;border-radius:8px}' +
    '.actions{display:flex;gap:6px;flex-wrap:wrap;margin-top:8px}.actions button,.note button{font-size:14px;padding:6px 12px;border-radius:16px;border:1px solid #0b5cad;background:#fff;color:#0b5cad;cursor:pointer}' +
    '.actions button:disabled{opacity:.5;cursor:default}.typing{padding:4px 14px;font-size:13px;color:#555}.typing[hidden]{display:none}' +
    'form{display:flex;gap:8px;padding:10px;border-top:1px solid #dde3ea}textarea{flex:1;resize:none;font-size:16px;padding:8px;border-radius:8px;border:1px solid #aab;min-height:40px;max-height:120px}' +
    'form button{font-size:16px;padding:8px 14px;border-radius:8px;border:0;background:#0b5cad;color:#fff;cursor:pointer}' +
    ':focus-visible{outline:3px solid #f5a623;outline-offset:2px}.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}' +
    '@media (max-width:480px){.panel:not(.page){inset:0;width:100%;height:100%;border-radius:0}}';

  var host = document.createElement('div');
  host.setAttribute('data-careloop-webchat', '');
  var root = host.attachShadow({ mode: 'open' });
  root.innerHTML = '<style>' + CSS + '</style>' +
    (PAGE ? '' : '<button class="launcher" type="button" aria-expanded="false" aria-controls="panel">💬</button>') +
    '<section class="panel' + (PAGE ? ' page' : '') + '" id="panel" role="' + (PAGE ? 'main' : 'dialog') + '" aria-labelledby="title"' + (PAGE ? '' : ' hidden') + '>' +
    '<header><h2 id="title">careloop</h2>' +
    '<label><span class="l-lang"></span><select class="lang"></select></label>' +
    '<label><span class="l-level"></span><select class="level"><option value="easy"></option><option value="standard"></option></select></label>' +
    (PAGE ? '' : '<button class="close" type="button">×</button>') + '</header>' +
    '<div class="log" role="log" aria-live="polite" aria-relevant="additions"></div>' +
    '<div class="typing" role="status" hidden></div>' +
    '<form><label class="sr" for="input"></label><textarea id="input" rows="1" maxlength="2000"></textarea><button type="submit"></button></form></section>';
  document.body.appendChild(host);
  function $(sel) { return root.querySelector(sel); }
  var panel = $('.panel'), launcher = $('.launcher'), log = $('.log'), typing = $('.typing');
  var input = $('textarea'), form = $('form'), langSel = $('.lang'), levelSel = $('.level'), closeBtn = $('.close');
  LANGS.forEach(function (l) {
    var o = document.createElement('option');
    o.value = l[0]; o.textContent = l[1]; o.lang = l[0];
    langSel.appendChild(o);
  });

  function applyLang() {
    panel.setAttribute('lang', S.lang);
    panel.setAttribute('dir', S.lang === 'ar' ? 'rtl' : 'ltr');
    langSel.value = S.lang; levelSel.value = S.level;
    $('.l-lang').textContent = t('lang'); $('.l-level').textContent = t('level');
    levelSel.options[0].textContent = t('easy'); levelSel.options[1].textContent = t('standard');
    $('label.sr').textContent = t('input'); input.placeholder = t('ph');
    form.querySelector('button').textContent = t('send');
    log.setAttribute('aria-label', t('log')); typing.textContent = t('typing');
    if (launcher) launcher.setAttribute('aria-label', t('open'));
    if (closeBtn) closeBtn.setAttribute('aria-label', t('close'));
  }

  // Rendering. Text is always set with textContent: messages never become markup.
  var draftEl = null;
  function render(item) {
    var el = document.createElement('div');
    if (item.k === 'note') {
      el.className = 'note';
      el.textContent = item.t;
      if (item.retry) {
        var b = document.createElement('button');
        b.type = 'button'; b.textContent = t('retry');
        b.onclick = function () { el.remove(); S.items.splice(S.items.indexOf(item), 1); post(item.retry.text, item.retry.cid); };
        el.appendChild(document.createTextNode(' ')); el.appendChild(b);
      }
    } else {
      el.className = 'msg ' + item.k;
      el.setAttribute('dir', 'auto');
      if (item.l) el.lang = item.l;
      if (item.id) el.setAttribute('data-message-id', item.id);
      var p = document.createElement('div');
      p.className = 'text'; p.textContent = item.t;
      el.appendChild(p);
      if (item.b && item.b.length) el.appendChild(actions(item));
    }
    log.insertBefore(el, draftEl);
    log.scrollTop = log.scrollHeight;
  }
  function actions(item) {
    var g = document.createElement('div');
    g.className = 'actions'; g.setAttribute('role', 'group'); g.setAttribute('aria-label', t('answers'));
    item.b.forEach(function (btn, i) {
      var b = document.createElement('button');
      b.type = 'button'; b.textContent = btn.label; b.disabled = !!item.done;
      b.setAttribute('data-action', btn.action);
      b.onclick = function () {
        item.done = true; save();
        g.querySelectorAll('button').forEach(function (x) { x.disabled = true; });
        send(btn.label, 'btn-' + item.id + '-' + i);
      };
      g.appendChild(b);
    });
    return g;
  }
  function add(item) { S.items.push(item); render(item); save(); }
  function setDraft(text) {
    if (text == null) { if (draftEl) draftEl.remove(); draftEl = null; return; }
    if (!draftEl) {
      draftEl = document.createElement('div');
      draftEl.className = 'msg bot draft'; draftEl.setAttribute('dir', 'auto');
      draftEl.setAttribute('aria-hidden', 'true'); // the final message is announced instead
      log.appendChild(draftEl);
    }
    draftEl.textContent = text;
    log.scrollTop = log.scrollHeight;
  }
  function setTyping(on) { typing.hidden = !on; }

  // Server events.
  function onEvent(ev, id) {
    switch (ev.type) {
      case 'typing': setTyping(true); break;
      case 'draft': setTyping(false); setDraft(ev.text); break;
      case 'retract': setDraft(null); setTyping(false); break;
      case 'message':
        setDraft(null); setTyping(false);
        add({ k: 'bot', id: ev.message_id, t: ev.text, l: ev.language, b: ev.buttons || [] });
        break;
      case 'error': setDraft(null); setTyping(false); add({ k: 'note', t: t('error') }); break;
      case 'gap': add({ k: 'note', t: t('gap') }); break;
    }
    // Reloads resume after the last message, so the newest draft or typing notice comes back.
    if (id && (ev.type === 'message' || ev.type === 'error')) { S.last = id; save(); }
  }

  var es = null;
  function eventsUrl() {
    return API + 'events?token=' + encodeURIComponent(S.token) + (S.last ? '&last_event_id=' + encodeURIComponent(S.last) : '');
  }
  function connect() {
    if (es) es.close();
    es = new EventSource(eventsUrl());
    es.onmessage = function (e) {
      var ev;
      try { ev = JSON.parse(e.data); } catch (x) { return; }
      onEvent(ev, e.lastEventId);
    };
    // EventSource reconnects by itself (sending Last-Event-ID); it gives up only on an HTTP
    // error, such as an expired token.
    es.onerror = function () {
      if (es && es.readyState === 2) { es = null; setTimeout(recover, 2000); }
    };
  }
  function recover() {
    var ctl = new AbortController();
    fetch(eventsUrl(), { signal: ctl.signal }).then(function (r) {
      ctl.abort();
      if (r.status === 401) fresh(); else connect();
    }, function () { setTimeout(recover, 5000); });
  }

  function authed(path, body) {
    return fetch(API + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + S.token },
      body: JSON.stringify(body)
    });
  }
  var starting = null;
  function start() {
    if (S.token && S.exp && Date.parse(S.exp) > Date.now() + 60000) {
      if (!es) connect();
      return Promise.resolve();
    }
    if (starting) return starting;
    var prefs = {};
    if (S.langChosen) prefs.language = S.lang;
    if (S.levelChosen) prefs.level = S.level;
    starting = fetch(API + 'session', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(prefs)
    }).then(function (r) {
      if (!r.ok) throw new Error('session ' + r.status);
      return r.json();
    }).then(function (s) {
      S.token = s.token; S.exp = s.expires_at; S.last = ''; save();
      connect();
    }).finally(function () { starting = null; });
    return starting;
  }
  function fresh() {
    S.token = null; S.exp = null;
    add({ k: 'note', t: t('fresh') });
    return start();
  }

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + '-' + Math.random().toString(36).slice(2);
  }
  function send(text, cid) {
    add({ k: 'me', t: text });
    post(text, cid || newId());
  }
  function post(text, cid) {
    start().then(function () {
      return authed('messages', { text: text, client_message_id: cid });
    }).then(function (r) {
      if (r.status === 401) return fresh().then(function () { post(text, cid); });
      if (!r.ok) return r.json().then(function (b) { add({ k: 'note', t: b.error || t('error') }); });
    }).catch(function () {
      add({ k: 'note', t: t('failed'), retry: { text: text, cid: cid } });
    });
  }
  function prefer(body) {
    if (!S.token) return;
    authed('preferences', body).then(function (r) {
      if (r.status === 401) fresh();
    }, function () { /* offline: the picker still changed the interface */ });
  }

  form.addEventListener('submit', function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = '';
    send(text);
  });
  input.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  langSel.addEventListener('change', function () {
    S.lang = langSel.value; S.langChosen = true; save(); applyLang();
    prefer({ language: S.lang });
  });
  levelSel.addEventListener('change', function () {
    S.level = levelSel.value; S.levelChosen = true; save(); applyLang();
    prefer({ level: S.level });
  });

  function open() {
    panel.hidden = false;
    if (launcher) launcher.setAttribute('aria-expanded', 'true');
    S.open = true; save();
    start().catch(function () { add({ k: 'note', t: t('failed') }); });
    input.focus();
  }
  function close() {
    if (PAGE) return;
    panel.hidden = true;
    launcher.setAttribute('aria-expanded', 'false');
    S.open = false; save();
    launcher.focus();
  }
  if (launcher) launcher.addEventListener('click', function () { if (panel.hidden) open(); else close(); });
  if (closeBtn) closeBtn.addEventListener('click', close);
  panel.addEventListener('keydown', function (e) { if (e.key === 'Escape') { e.preventDefault(); close(); } });

  applyLang();
  S.items.forEach(render);
  if (PAGE || S.open) open();
})();
