/**
 * Splits a byte stream from a container into lines, in time linear in the bytes: only each new
 * chunk is searched for a newline, and a line is joined once. A line longer than `maxBytes` is
 * forged or broken: it is dropped whole (counted in `oversized`), and the next line is read as usual.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private partsLen = 0;
  private skipping = false;
  oversized = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly onLine: (line: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    let nl: number;
    while ((nl = chunk.indexOf(0x0a, start)) >= 0) {
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.skipping || this.partsLen + piece.length > this.maxBytes) {
        if (!this.skipping) this.oversized++;
        this.reset();
        continue;
      }
      const line = this.partsLen ? Buffer.concat([...this.parts, piece]) : piece;
      this.reset();
      if (line.length) this.onLine(line);
    }
    if (start >= chunk.length || this.skipping) return;
    const rest = chunk.subarray(start);
    if (this.partsLen + rest.length > this.maxBytes) {
      this.oversized++;
      this.reset();
      this.skipping = true;
      return;
    }
    this.parts.push(rest);
    this.partsLen += rest.length;
  }

  private reset() {
    this.parts = [];
    this.partsLen = 0;
    this.skipping = false;
  }
}
