/**
 * An object's one alarm, which serves token expiry, hand-off retries and
 * stats reports: `arm(at)` makes sure it fires by `at`. The armed time is
 * remembered while known (not after a restart, not once it fired), which
 * spares a storage read per event; each setAlarm is a billed row write.
 */
export class AlarmClock {
  private at: number | undefined;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly meter: { alarmsSet: number },
  ) {}

  /** The alarm fired: the armed time is no longer known. */
  fired(): void {
    this.at = undefined;
  }

  async arm(at: number): Promise<void> {
    if (this.at !== undefined && this.at <= at) return;
    const current = await this.storage.getAlarm();
    if (current !== null && current <= at) {
      this.at = current;
      return;
    }
    this.meter.alarmsSet++;
    await this.storage.setAlarm(at);
    this.at = at;
  }
}
