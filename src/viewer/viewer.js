// tracebridge trace viewer: optional enhancements. The pages are complete
// without this file. Span data is only ever read through textContent and
// attributes, and nothing here writes HTML (no innerHTML).
"use strict";
(function () {
	var list = document.querySelector("ol.waterfall");
	if (!list)
		return;
	var bar = document.createElement("div");
	bar.className = "tools";
	var filter = document.createElement("input");
	filter.type = "search";
	filter.placeholder = "filter spans (name, service, host)";
	var expand = document.createElement("button");
	expand.type = "button";
	expand.textContent = "expand all";
	var live = document.createElement("label");
	var box = document.createElement("input");
	box.type = "checkbox";
	live.appendChild(box);
	live.appendChild(document.createTextNode(" refresh every 3 s"));
	bar.appendChild(filter);
	bar.appendChild(expand);
	bar.appendChild(live);
	var axis = document.querySelector("div.axis");
	list.parentNode.insertBefore(bar, axis || list);

	var spans = list.querySelectorAll("li.span");
	filter.addEventListener("input", function () {
		var q = filter.value.toLowerCase();
		spans.forEach(function (li) {
			var s = li.querySelector("summary").textContent.toLowerCase();
			li.classList.toggle("hidden", q !== "" && s.indexOf(q) < 0);
		});
	});
	var open = false;
	expand.addEventListener("click", function () {
		open = !open;
		list.querySelectorAll("details").forEach(function (d) { d.open = open; });
		expand.textContent = open ? "collapse all" : "expand all";
	});
	var timer = null;
	if (sessionStorage.getItem("tb-live") === "1") {
		box.checked = true;
	}
	function arm() {
		if (timer)
			clearTimeout(timer);
		timer = box.checked ? setTimeout(function () { location.reload(); }, 3000) : null;
		sessionStorage.setItem("tb-live", box.checked ? "1" : "0");
	}
	box.addEventListener("change", arm);
	arm();
})();
