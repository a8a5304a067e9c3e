"use strict";
// The hive page: the hive-wide stats and the top agents by cost, read again when the recorder commits new ones.

(() => {
  const charts = stats.hive(document.getElementById("stats"));
  home.start({ stats: (s) => charts.changed(s.agents) });
})();
