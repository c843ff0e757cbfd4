// redlock 5's package.json "exports" hides its own typings from NodeNext resolution; the part the
// benchmark uses, declared here.
declare module "redlock" {
  import type { Redis } from "ioredis";
  interface Lock {
    release(): Promise<unknown>;
  }
  export default class Redlock {
    constructor(clients: Redis[], settings?: { retryCount?: number; retryDelay?: number; driftFactor?: number });
    acquire(resources: string[], duration: number): Promise<Lock>;
  }
}
