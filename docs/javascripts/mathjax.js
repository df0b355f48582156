// MathJax 3 configuration; MathJax itself is served from this site (javascripts/mathjax/, see docs/hooks/mathjax.py).
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" }
};
// re-typeset when mkdocs-material swaps the page content; on the first load MathJax typesets by itself
document$.subscribe(() => {
  if (window.MathJax && typeof window.MathJax.typesetPromise === "function") {
    window.MathJax.typesetPromise();
  }
});
