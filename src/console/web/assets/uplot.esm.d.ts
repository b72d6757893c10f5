// The types of ./uplot.esm.js, which keyward serves from the uplot package (its dist
// directory) at this path: the pages import uPlot by a relative URL, and TypeScript reads
// this file in its place. Never served (keyward serves no .ts file).
import uPlot from "uplot";
export default uPlot;
