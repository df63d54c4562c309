// orch run report: links from the DAG and the timeline to a step's section, and
// expand/collapse of every prompt and answer. No network, no libraries.
(function () {
  "use strict";
  function show(id) {
    var target = document.getElementById(id);
    if (!target) { return; }
    var first = target.querySelector("details");
    if (first) { first.open = true; }
    target.scrollIntoView({ block: "start" });
    target.classList.remove("flash");
    void target.offsetWidth;
    target.classList.add("flash");
  }
  document.querySelectorAll("[data-step-ref]").forEach(function (el) {
    el.addEventListener("click", function () { show(el.getAttribute("data-step-ref")); });
    el.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); show(el.getAttribute("data-step-ref")); }
    });
  });
  function all(open) {
    document.querySelectorAll("details").forEach(function (d) { d.open = open; });
  }
  var expand = document.getElementById("expand-all");
  var collapse = document.getElementById("collapse-all");
  if (expand) { expand.addEventListener("click", function () { all(true); }); }
  if (collapse) { collapse.addEventListener("click", function () { all(false); }); }
  document.documentElement.setAttribute("data-js", "ready");
})();
