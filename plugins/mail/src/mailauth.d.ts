/** Types of the parts of mailauth (4.x, CommonJS) that ship none of their own. */
declare module 'mailauth/lib/tools.js' {
  /** A DKIM (or other) key record's public key, fetched and checked: version, key type, RSA length at least minBitLength. */
  export function getPublicKey(
    type: 'DKIM',
    name: string,
    minBitLength: number,
    resolver: (name: string, type: string) => Promise<unknown>,
  ): Promise<{ publicKey: Buffer; rr: string }>;
}

declare module 'mailauth/lib/dmarc/get-dmarc-record.js' {
  /** The one v=DMARC1 record of a domain or, failing that, of its organisational domain, split into its tags; false when there is none. */
  export default function getDmarcRecord(
    domain: string,
    resolver: (name: string, type: string) => Promise<unknown>,
  ): Promise<false | ({ rr: string; isOrgRecord: boolean } & Record<string, string | number | boolean>)>;
}
