/**
 * The features of the 'full' workload (see features.ts), in a fixed order: a seed's run
 * depends on it. Each entry makes a fresh instance for one simulation.
 */
import type { SimFeature } from './features.js';
import { constraintFeature } from './constraint-feature.js';
import { sequenceFeature } from './sequence-feature.js';
import { triggerFeature } from './trigger-feature.js';

export const FEATURES: readonly (() => SimFeature)[] = [sequenceFeature, constraintFeature, triggerFeature];
