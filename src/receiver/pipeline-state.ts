/**
 * What one running transfer's pipeline is waiting for, for an operator's
 * debug dump (`kill -USR2` on serve logs every running transfer's state).
 * A transfer runs two loops: the reader (reserve record budget, wait for the
 * sender's next message, check it, hand it to the read-ahead) and the writer
 * (wait for the next checked record, its decode on a worker, the write,
 * sometimes a checkpoint). Each says where it is and since when.
 */
export type ReaderStage = 'starting' | 'record budget' | 'bandwidth limit' | 'sender' | 'read-ahead full' | 'ended';
export type WriterStage = 'starting' | 'next record' | 'decode' | 'write' | 'checkpoint' | 'ended';

export interface PipelineSnapshot {
  reader: ReaderStage;
  readerWaitingSeconds: number;
  writer: WriterStage;
  writerWaitingSeconds: number;
  recordsReceived: number;
  recordsApplied: number;
}

export class PipelineState {
  private reader: ReaderStage = 'starting';
  private readerSinceMs = Date.now();
  private writer: WriterStage = 'starting';
  private writerSinceMs = Date.now();
  recordsReceived = 0;
  recordsApplied = 0;

  reading(stage: ReaderStage): void {
    this.reader = stage;
    this.readerSinceMs = Date.now();
  }

  writing(stage: WriterStage): void {
    this.writer = stage;
    this.writerSinceMs = Date.now();
  }

  snapshot(nowMs = Date.now()): PipelineSnapshot {
    return {
      reader: this.reader,
      readerWaitingSeconds: Math.round((nowMs - this.readerSinceMs) / 100) / 10,
      writer: this.writer,
      writerWaitingSeconds: Math.round((nowMs - this.writerSinceMs) / 100) / 10,
      recordsReceived: this.recordsReceived,
      recordsApplied: this.recordsApplied,
    };
  }
}
