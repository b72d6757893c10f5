// The types of eslint.config.js's exports, for the code that reads the layer map
// (test/unit/layers.test.ts, scripts/layers.ts).
import type { ESLint, Linter } from "eslint";

export interface Layer {
  readonly layer: string;
  /** unit (a folder of src/, or a file directly in src/ without .ts) -> what it is */
  readonly units: Readonly<Record<string, string>>;
}
export declare const LAYERS: readonly Layer[];
export declare const SIDEWAYS: Readonly<Record<string, readonly string[]>>;
export declare function unitOf(file: string, src?: string): string | undefined;
export declare function allowedImports(unit: string): Set<string> | undefined;
export declare const keywardPlugin: ESLint.Plugin;
declare const config: Linter.Config[];
export default config;
