export type { CloseInfo, Connection } from './connection.js';
