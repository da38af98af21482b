// After htmx puts a result on the page, bring it into view without moving the page more
// than needed: a Test result that lands below the fold must not look like nothing happened.
document.body.addEventListener("htmx:afterSwap", function (event) {
  var target = event.detail.target;
  if (target && target.hasAttribute("data-reveal")) {
    target.scrollIntoView({ block: "nearest", behavior: "instant" });
  }
});
// A form the server refuses (400) comes back with its errors to show, not as a failure.
htmx.config.responseHandling = [
  { code: "204", swap: false },
  { code: "[23]..", swap: true },
  { code: "4..", swap: true, error: false },
  { code: "...", swap: false, error: true },
];
