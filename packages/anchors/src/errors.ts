/** One problem found in a plan: where (`path`, e.g. `headMaps[3][1]`) and what. */
export interface PlanIssue {
  readonly path: string;
  readonly message: string;
}

/**
 * A plan that cannot be used. `path` names the first offending field the way it is written in
 * the JSON (`anchors[2]`, `model.kvHeads`, `budget.percent`; `''` for the document itself);
 * `issues` lists every problem found.
 */
export class PlanError extends Error {
  override readonly name = 'PlanError';
  readonly path: string;
  readonly issues: readonly PlanIssue[];

  constructor(issues: readonly PlanIssue[]) {
    const first = issues[0] ?? { path: '', message: 'invalid plan' };
    const where = (issue: PlanIssue) => (issue.path === '' ? 'plan' : issue.path);
    const more =
      issues.length > 1 ? ` (and ${issues.length - 1} more: ${issues.slice(1).map(where).join(', ')})` : '';
    super(`invalid Kascade plan at ${where(first)}: ${first.message}${more}`);
    this.path = first.path;
    this.issues = issues;
  }
}

/** Calibration fed out of order or with inconsistent shapes. */
export class CalibrationError extends Error {
  override readonly name = 'CalibrationError';
}

/** Anchor selection given inputs it cannot use. */
export class AnchorSelectionError extends RangeError {
  override readonly name = 'AnchorSelectionError';
}
