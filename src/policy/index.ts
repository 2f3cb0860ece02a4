// Authorization: the policy document, its compilation, and pure decisions.
export { MANAGEMENT_PERMISSIONS, PERMISSIONS, isPermission } from './permissions.js';
export type { Permission } from './permissions.js';
export { compilePattern, matches, patternProblem } from './pattern.js';
export type { CompiledPattern, PatternKind } from './pattern.js';
export { policyDocumentSchema } from './schema.js';
export type { PolicyDocument, PolicyDocumentInput } from './schema.js';
export { compilePolicy } from './compile.js';
export type { CompiledPolicy } from './compile.js';
export { callerClass, decide, explain } from './decide.js';
export type { AuthzRequest, Decision, Explanation, ExplainStep, StepEffect } from './decide.js';
export { parsePolicy, policyFromValue, PolicyError, formatPath } from './parse.js';
export type { PolicyFormat } from './parse.js';
export { loadPolicyFile, policyFormatOf, PolicyHolder } from './holder.js';
export type { ReloadResult } from './holder.js';
