/* The guide's chat sidebar: register the JS-SDK with server-made signatures, find the current
 * customer, show them and the content library, and send an item with one tap. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("gb-config").textContent);
  var state = { chat: null, group: null, customer: null, task: cfg.task, profile: null, signatures: {}, sending: false, replied: {}, left: false };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs[key]; } else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }

  function toast(text, bad) {
    var box = $("toast");
    box.textContent = text;
    box.className = bad ? "toast bad" : "toast";
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { box.hidden = true; }, 2600);
  }

  async function api(path, options) {
    var response = await fetch(path, Object.assign({
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" }
    }, options || {}));
    var data = await response.json().catch(function () { return {}; });
    if (!response.ok) {
      var error = new Error((data.error && data.error.reason) || ("HTTP " + response.status));
      error.code = data.error && data.error.code;
      throw error;
    }
    return data;
  }

  function signatures(url) {
    if (!state.signatures[url]) {
      state.signatures[url] = api("/sidebar/jsapi-config?url=" + encodeURIComponent(url));
    }
    return state.signatures[url];
  }

  function register() {
    ww.register({
      corpId: cfg.corpId,
      agentId: cfg.agentId,
      jsApiList: ["getContext", "getCurExternalContact", "getCurExternalChat", "sendChatMessage"],
      getConfigSignature: async function (url) { return (await signatures(url)).config; },
      getAgentConfigSignature: async function (url) { return (await signatures(url)).agentConfig; }
    });
  }

  // Times show in the store's time zone (WeCom's clients run on phones set to any zone).
  function parts(iso, options) {
    var format = new Intl.DateTimeFormat("en-CA", Object.assign({ timeZone: cfg.timezone, hourCycle: "h23" }, options));
    var out = {};
    format.formatToParts(new Date(iso)).forEach(function (p) { out[p.type] = p.value; });
    return out;
  }
  function day(iso) {
    if (!iso) { return "-"; }
    var p = parts(iso, { year: "numeric", month: "2-digit", day: "2-digit" });
    return p.year + "-" + p.month + "-" + p.day;
  }
  function when(iso) {
    if (!iso) { return ""; }
    var p = parts(iso, { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
    return p.month + "-" + p.day + " " + p.hour + ":" + p.minute;
  }
  var W = cfg.words;  // the words, from the catalogs (guidebot/web/sidebar/words.py)
  var STATUS = W.relation;

  // Outside a chat the guide picks the customer, and may pick another one at any time.
  async function pick() {
    var section = $("picker");
    var select = $("customer-select");
    var data = await api("/sidebar/api/customers");
    data.customers.forEach(function (c) {
      select.appendChild(el("option", { value: c.external_userid, text: (c.name || c.external_userid) + (c.remark ? " (" + c.remark + ")" : "") }));
    });
    section.hidden = false;
    return new Promise(function (resolve) {
      select.addEventListener("change", function () {
        if (!select.value) { return; }
        if (!state.customer) { resolve(select.value); return; }
        switchTo(select.value);
      });
    });
  }

  async function switchTo(customer) {
    state.customer = customer;
    state.task = null;
    document.body.dataset.ready = "";
    try {
      await loadProfile();
      document.body.dataset.ready = "1";
    } catch (err) {
      toast(W.cannot_show + ": " + err.message, true);
    }
  }

  async function identify() {
    try {
      var res = await ww.getCurExternalContact();
      if (res && res.userId) { return res.userId; }
    } catch (err) { /* not in a chat with a customer (a link from the bot, the demo) */ }
    if (cfg.customer) { return cfg.customer; }
    $("customer-status").textContent = W.choose_above;
    $("customer-select").value = "";
    return pick();
  }

  function renderProfile(data) {
    var box = $("customer");
    box.textContent = "";
    var c = data.customer, r = data.relation;
    box.appendChild(el("h2", { "data-testid": "customer-name", text: c.name || c.external_userid }));
    var dl = el("dl");
    function row(label, value) { dl.appendChild(el("dt", { text: label })); dl.appendChild(value); }
    row(W.store, el("dd", { text: r.store ? r.store.name : "-" }));
    row(W.since, el("dd", { text: r.since_day || "-" }));  // on the relation's store's calendar
    row(W.status, el("dd", { text: (STATUS[r.status] || r.status) + (r.remark ? " · " + W.remark + " " + r.remark : "") }));
    row(W.stage, el("dd", { "data-testid": "stage", text: data.stage ? data.stage.name : "-" }));  // 新客, 互动中, 首购 ...
    var chips = el("dd", { "class": "chips", text: r.tags.length ? "" : "-" });
    r.tags.forEach(function (t) { chips.appendChild(el("span", { "class": "chip", text: t })); });
    row(W.tags, chips);
    row(W.journeys, el("dd", { text: data.enrollments.map(function (e) { return e.name; }).join("、") || "-" }));
    box.appendChild(dl);
    state.left = r.status !== "active";
    document.body.classList.toggle("left", state.left);
    if (state.left) {
      // Nothing can reach them through this guide any more: say so, offer nothing to do.
      box.appendChild(el("p", { "class": "banner", "data-testid": "left", text: W.left + "（" + (STATUS[r.status] || r.status) + "）" }));
      state.task = null;
      return;
    }
    var replied = state.replied[c.external_userid];
    if (data.enrollments.length) {
      // WeCom tells an app nothing when a customer writes back: the guide says so here, once.
      var button = el("button", { type: "button", "data-testid": "mark-replied", text: replied ? "✓ " + W.reply_recorded : W.customer_replied });
      if (replied) { button.disabled = true; } else { button.addEventListener("click", function () { markReplied(button); }); }
      box.appendChild(button);
    }
    if (replied) {
      box.appendChild(el("p", { "class": "muted", "data-testid": "replied-note", text: W.reply_recorded + " · " + when(replied) }));
    }

    var tasks = el("ul", { "class": "tasks", "data-testid": "tasks" });
    if (data.tasks.length) {
      data.tasks.forEach(function (t) {
        var input = el("input", { type: "radio", name: "task", value: String(t.id) });
        if (state.task === t.id) { input.checked = true; }
        input.addEventListener("change", function () { state.task = t.id; highlight(); });
        var label = t.playbook_name + " · " + t.step_name + " · " + (t.status === "snoozed" ? W.snoozed + " " : "") + when(t.due_at);
        tasks.appendChild(el("li", { "data-task": String(t.id) }, [el("label", {}, [input, el("span", { text: label })]), taskActions(t)]));
      });
      var none = el("input", { type: "radio", name: "task", value: "" });
      if (!state.task) { none.checked = true; }
      none.addEventListener("change", function () { state.task = null; highlight(); });
      tasks.appendChild(el("li", {}, [el("label", {}, [none, el("span", { text: W.no_task })])]));
      box.appendChild(el("p", { "class": "muted", text: W.open_tasks }));
      box.appendChild(tasks);
    } else {
      state.task = null;
    }
    if (data.recent_forwards.length) {
      var sent = el("ul", { "class": "opens", "data-testid": "forwards" });
      data.recent_forwards.forEach(function (f) { sent.appendChild(el("li", { text: f.title + " · " + when(f.sent_at) })); });
      box.appendChild(el("p", { "class": "muted", text: W.recently_sent }));
      box.appendChild(sent);
    }
    if (data.recent_opens.length) {
      var opens = el("ul", { "class": "opens", "data-testid": "opens" });
      data.recent_opens.forEach(function (o) { opens.appendChild(el("li", { text: o.title + " · " + when(o.opened_at) })); });
      box.appendChild(el("p", { "class": "muted", text: W.recent_opens }));
      box.appendChild(opens);
    }
  }

  // One tap: done, or put off 2 hours; a skip asks why first.
  function taskActions(t) {
    var box = el("div", { "class": "task-actions" });
    function button(change, text, extra) {
      var b = el("button", { type: "button", "class": "small", "data-testid": change + "-" + t.id, text: text });
      b.addEventListener("click", function () { changeTask(t, change, extra ? extra() : {}, box); });
      return b;
    }
    var reason = el("input", { type: "text", "class": "reason", maxlength: "200", placeholder: W.why_skip, "data-testid": "skip-reason-" + t.id, hidden: "" });
    var confirm = button("skip", W.confirm_skip, function () { return { reason: reason.value.trim() }; });
    confirm.hidden = true;
    var skip = el("button", { type: "button", "class": "small ghost", "data-testid": "skip-" + t.id, text: W.skip });
    skip.addEventListener("click", function () { reason.hidden = false; confirm.hidden = false; skip.hidden = true; reason.focus(); });
    box.appendChild(button("done", W.done));
    box.appendChild(button("snooze", W.later, function () { return { delay: "2h" }; }));
    box.appendChild(skip);
    box.appendChild(reason);
    box.appendChild(confirm);
    return box;
  }

  var CHANGED = { done: W.task_done, skip: W.skipped, snooze: W.put_off + " " };

  async function changeTask(t, change, extra, box) {
    if (change === "skip" && !extra.reason) { toast(W.say_why, true); return; }
    Array.prototype.forEach.call(box.querySelectorAll("button"), function (b) { b.disabled = true; });
    try {
      var result = await api("/sidebar/api/tasks/" + change, { method: "POST", body: JSON.stringify(Object.assign({ task_id: t.id }, extra)) });
      toast(CHANGED[change] + (change === "snooze" ? when(result.task.due_at) : ""));
      if (state.task === t.id) { state.task = null; }
      await loadProfile();
      // Once the list shows the change: a tap before it landed on buttons the reload replaced.
      document.body.dataset.lastTask = change + "-" + t.id;
    } catch (err) {
      await failed(err);
    }
  }

  // A refusal because the customer left shows them as left; anything else says what went wrong.
  async function failed(err) {
    if (err.code === "customer_left") {
      toast(W.left, true);
    } else {
      toast(W.failed + ": " + err.message, true);
    }
    await loadProfile().catch(function () {});
  }

  function suggestedKey() {
    var profile = state.profile;
    if (!profile || !state.task) { return null; }
    var task = profile.tasks.filter(function (t) { return t.id === state.task; })[0];
    return task ? task.content_key : null;
  }

  function highlight() {
    var key = suggestedKey();
    Array.prototype.forEach.call($("items").children, function (li) {
      li.classList.toggle("suggested", !!key && li.dataset.key === key);
    });
  }

  async function loadProfile() {
    state.profile = await api("/sidebar/api/customer?external_userid=" + encodeURIComponent(state.customer));
    renderProfile(state.profile);
    highlight();
  }

  var KIND = W.kinds;

  var searches = 0;

  async function loadContent(query, tag) {
    var params = new URLSearchParams();
    if (query) { params.set("q", query); }
    if (tag) { params.set("tag", tag); }
    var mine = ++searches;
    var data = await api("/sidebar/api/content?" + params.toString());
    if (mine !== searches) { return; }  // a newer search answered first: keep its list
    var list = $("items");
    list.textContent = "";
    if (!data.items.length) {
      list.appendChild(el("li", { "class": "muted", text: W.nothing_matches }));
    }
    var tags = {};
    data.items.forEach(function (item) {
      item.tags.forEach(function (t) { tags[t] = true; });
      var picture = item.cover_url ? el("img", { src: item.cover_url, alt: "" }) : el("span", { "class": "kind", text: KIND[item.kind] || item.kind });
      var button = el("button", { type: "button", "data-testid": "send-" + item.key, text: W.send });
      button.addEventListener("click", function () { send(item, button); });
      var li = el("li", { "data-key": item.key }, [
        picture,
        el("div", { "class": "text" }, [
          el("div", { "class": "title", text: item.title }),
          el("div", { "class": "summary", text: (KIND[item.kind] || item.kind) + (item.summary ? " · " + item.summary : "") })
        ]),
        button
      ]);
      list.appendChild(li);
    });
    var tagBox = $("tags");
    tagBox.textContent = "";
    Object.keys(tags).slice(0, 12).forEach(function (t) {
      var chip = el("button", { type: "button", "class": "chip", text: "#" + t });
      chip.addEventListener("click", function () { $("q").value = ""; loadContent("", t); });
      tagBox.appendChild(chip);
    });
    highlight();
  }

  async function send(item, button) {
    if (state.chat) { return sendToGroup(item, button); }
    if (!state.customer) { toast(W.no_customer_yet, true); return; }
    if (state.left) { toast(W.left, true); return; }
    if (state.sending) { return; }
    state.sending = true;
    button.disabled = true;
    try {
      var prepared = await api("/sidebar/api/prepare", {
        method: "POST",
        body: JSON.stringify({ item_id: item.id, external_userid: state.customer, task_id: state.task || null })
      });
      var result;
      try {
        result = await ww.sendChatMessage(prepared.message);
      } catch (err) {
        result = err;
      }
      var message = result && (result.errMsg || result.err_msg);
      if (message !== "sendChatMessage:ok") {
        toast(W.not_sent, true);
        return;
      }
      var recorded = await api("/sidebar/api/forwards", { method: "POST", body: JSON.stringify({ ref: prepared.ref }) });
      if (recorded.task_completed) { state.task = null; }
      toast(recorded.task_completed ? W.sent_task_done : W.sent);
      document.body.dataset.lastForward = item.key;
      await loadProfile();
    } catch (err) {
      if (err.code === "customer_left") { await failed(err); } else { toast(W.send_failed + ": " + err.message, true); }
    } finally {
      state.sending = false;
      button.disabled = false;
    }
  }

  async function markReplied(button) {
    if (button.disabled) { return; }  // a second tap while the first is on its way
    button.disabled = true;
    button.textContent = W.recording;
    try {
      var result = await api("/sidebar/api/replied", { method: "POST", body: JSON.stringify({ external_userid: state.customer }) });
      state.replied[state.customer] = new Date().toISOString();
      toast(result.stopped ? W.noted_ended : W.noted);
      await loadProfile();
    } catch (err) {
      button.textContent = W.customer_replied;
      button.disabled = false;
      await failed(err);
    }
  }

  // Opened from a customer group's toolbar: the group, and its members who are my customers.
  async function groupContext() {
    try {
      var context = await ww.getContext();
      if (!context || context.entry !== "group_chat_tools") { return null; }
      var res = await ww.getCurExternalChat();
      return res && res.chatId ? res.chatId : null;
    } catch (err) { return null; }
  }

  function renderGroup(data) {
    var box = $("customer");
    box.textContent = "";
    var g = data.group;
    box.appendChild(el("h2", { "data-testid": "group-name", text: g.name || g.chat_id }));
    var dl = el("dl");
    function row(label, value) { dl.appendChild(el("dt", { text: label })); dl.appendChild(value); }
    row(W.owner, el("dd", { "data-testid": "group-owner", text: g.owner.name || g.owner.userid || "-" }));
    row(W.size, el("dd", { "data-testid": "group-size", text: String(g.members) }));
    row(W.group_customers, el("dd", { text: String(g.customers) }));
    box.appendChild(dl);
    box.appendChild(el("p", { "class": "muted", text: W.my_customers_here }));
    if (!data.my_customers.length) {
      box.appendChild(el("p", { "class": "muted", "data-testid": "no-customers-here", text: W.none_of_mine }));
      return;
    }
    var list = el("ul", { "class": "opens", "data-testid": "group-customers" });
    data.my_customers.forEach(function (c) {
      list.appendChild(el("li", { "data-customer": c.external_userid, text: (c.name || c.external_userid) + (c.remark ? " (" + c.remark + ")" : "") + " · " + W.joined + " " + day(c.joined_at) }));
    });
    box.appendChild(list);
  }

  async function loadGroup() {
    state.group = await api("/sidebar/api/group?chat_id=" + encodeURIComponent(state.chat));
    renderGroup(state.group);
  }

  async function sendToGroup(item, button) {
    if (state.sending) { return; }
    state.sending = true;
    button.disabled = true;
    try {
      var prepared = await api("/sidebar/api/group/prepare", { method: "POST", body: JSON.stringify({ item_id: item.id, chat_id: state.chat }) });
      var result;
      try { result = await ww.sendChatMessage(prepared.message); } catch (err) { result = err; }
      var message = result && (result.errMsg || result.err_msg);
      if (message !== "sendChatMessage:ok") { toast(W.not_sent, true); return; }
      await api("/sidebar/api/group/forwards", { method: "POST", body: JSON.stringify({ ref: prepared.ref }) });
      toast(W.sent_to_group);
      document.body.dataset.lastForward = item.key;
    } catch (err) {
      toast(W.send_failed + ": " + err.message, true);
    } finally {
      state.sending = false;
      button.disabled = false;
    }
  }

  async function startInGroup(content) {
    document.body.classList.add("in-group");
    try {
      await loadGroup();
      document.body.dataset.ready = "1";
    } catch (err) {
      $("customer").textContent = "";
      $("customer").appendChild(el("p", { "class": "muted", "data-testid": "group-error", text: W.cannot_show_group + ": " + err.message }));
    }
    await content.catch(function (err) { toast(err.message, true); });
  }

  async function start() {
    register();
    var search = $("search");
    search.addEventListener("submit", function (event) {
      event.preventDefault();
      loadContent($("q").value.trim(), null).catch(function (err) { toast(err.message, true); });
    });
    var content = loadContent("", null);
    state.chat = await groupContext();
    if (state.chat) { return startInGroup(content); }
    try {
      state.customer = await identify();
      await loadProfile();
      document.body.dataset.ready = "1";
    } catch (err) {
      $("customer").textContent = "";
      $("customer").appendChild(el("p", { "class": "muted", text: W.cannot_show + ": " + err.message }));
    }
    await content.catch(function (err) { toast(err.message, true); });
  }

  start();
})();
