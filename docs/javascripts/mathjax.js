// MathJax 3 configuration; MathJax itself is served from this site (javascripts/mathjax/, see docs/hooks/mathjax.py).
// Typeset the formulas (arithmatex) and the table-of-contents entries of headings with math (md-ellipsis).
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex|md-ellipsis" }
};
// re-typeset when mkdocs-material swaps the page content; on the first load MathJax typesets by itself
document$.subscribe(() => {
  if (window.MathJax && typeof window.MathJax.typesetPromise === "function") {
    window.MathJax.typesetPromise();
  }
});
