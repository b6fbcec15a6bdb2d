"""Verify a message's DKIM signature with dkimpy (Debian's python3-dkim, with python3-nacl for
ed25519, which Mail::DKIM 1.20230212 does not support), an implementation independent of the
signer's, against the one TXT record given instead of DNS.

Usage: /usr/bin/python3 dkim-verify.py 'SELECTOR._domainkey.DOMAIN. IN TXT ( "v=DKIM1; ..." "p=..." )' < message
Prints the result; exits 0 when the signature verifies, 1 when not, 2 on bad usage.
"""
import re
import sys

import dkim


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    m = re.match(r'^(\S+)\s+IN\s+TXT\s+\((.*)\)\s*$', sys.argv[1].replace('\n', ' '))
    if not m:
        print(f'not a TXT record: {sys.argv[1]}', file=sys.stderr)
        return 2
    owner = m.group(1).rstrip('.').lower()
    value = ''.join(re.findall(r'"([^"]*)"', m.group(2))).encode()

    # No DNS: the given record answers its own name, every other name has none.
    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        return value if name.rstrip('.').lower() == owner else None

    message = sys.stdin.buffer.read().replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
    verifier = dkim.DKIM(message)
    try:
        ok = verifier.verify(dnsfunc=dnsfunc)
    except dkim.DKIMException as err:
        print(f'result: invalid ({err})')
        return 1
    print(f'result: {"pass" if ok else "fail"}')
    return 0 if ok else 1


sys.exit(main())
