/* A stand-in for WeCom's JS-SDK (`ww`), served only while guidebot talks to the simulated
 * WeCom. register() fetches both signatures through the page's own callbacks and has the
 * simulator check them against its live tickets; getCurExternalContact() names the customer
 * from ?customer= (else it fails as outside a chat, and the page offers a picker);
 * ?chat= stands for a customer group's toolbar: getContext() says group_chat_tools and
 * getCurExternalChat() names the group;
 * sendChatMessage() records the message in ww.sent and answers sendChatMessage:ok. */
(function () {
  "use strict";
  var ready = Promise.reject(new Error("ww.register was not called"));
  ready.catch(function () {});
  var shim = {
    SDK_VERSION: "guidebot-shim",
    isShim: true,
    sent: [],
    verified: null,
    register: function (options) {
      ready = (async function () {
        var url = location.href.split("#")[0];
        var config = await options.getConfigSignature(url);
        var agentConfig = await options.getAgentConfigSignature(url);
        var response = await fetch("/sidebar/dev/jsapi-verify", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ url: url, config: config, agentConfig: agentConfig })
        });
        var verdict = await response.json();
        shim.verified = verdict;
        if (!verdict.valid) { throw new Error("the simulated WeCom rejected the JS-SDK signatures"); }
        return verdict;
      })();
      ready.catch(function () {});
    },
    getContext: async function () {
      await ready;
      var chat = new URLSearchParams(location.search).get("chat");
      return { errMsg: "getContext:ok", entry: chat ? "group_chat_tools" : "single_chat_tools" };
    },
    getCurExternalChat: async function () {
      await ready;
      var chat = new URLSearchParams(location.search).get("chat");
      if (!chat) { throw { errMsg: "getCurExternalChat:fail without context of external chat" }; }
      return { errMsg: "getCurExternalChat:ok", chatId: chat };
    },
    getCurExternalContact: async function () {
      await ready;
      var id = new URLSearchParams(location.search).get("customer");
      if (!id) { throw { errMsg: "getCurExternalContact:fail without context of external contact" }; }
      return { errMsg: "getCurExternalContact:ok", userId: id };
    },
    sendChatMessage: async function (message) {
      await ready;
      shim.sent.push(message);
      return { errMsg: "sendChatMessage:ok" };
    }
  };
  window.ww = shim;
})();
