import { definePlugin } from '@scoped/sdk';
import { configurePostfix } from './configure-postfix.js';
import { deliverabilityScope, mailDefaultDmarc, mailDefaultSpf, mailDnsServers } from './deliverability.js';
import { dkimDomains, dkimOldKeys, dkimScope, dkimUnit } from './dkim.js';
import { piggybackScope, smartHostScope, spamFilterScope } from './scopes.js';
import { mailSenderIps, senderIpScope, senderIpUnit } from './sender-ip.js';
import { spamFilterUnit } from './spam-filter.js';
import { postsrsdEnabled, srsScope, srsUnit } from './srs.js';
import { postfixSubmission, submissionScope, submissionUnit } from './submission.js';
import { postfixTlsFingerprints, postfixTlsPolicy, tlsPolicyScope, tlsPolicyUnit } from './tls-policy.js';
import { mailTransports, transportScope, transportUnit } from './transport.js';
import {
  postfixCustomConfig,
  postfixRelayMynetworks,
  postfixSaslHeader,
  postfixSmarthost,
  postfixTlsLevel,
  rspamdEnabled,
  rspamdMilter,
  spamfilter,
} from './vars.js';

export { DKIM_DIR, SIGNING_CONF, dkimScope, dkimUnit, keyPath, signingConf } from './dkim.js';
export { keyAlgorithm, newKey, txtRecord } from './dkim-keys.js';
export { AUTH_MAP, authMapText, configurePostfix, desiredParams } from './configure-postfix.js';
export { passwordProblem, relayProblem, userProblem } from './relay.js';
export { piggybackScope, smartHostScope, spamFilterScope } from './scopes.js';
export { relayAddress, verifyRelay } from './smtp-verify.js';
export { SENDER_TRANSPORT_MAP, addressProblem, senderIpScope, senderIpUnit } from './sender-ip.js';
export { ONESHOT_FILTER, TRANSPORT_MAP, transportScope, transportUnit } from './transport.js';
export { destinationProblem, transportMapText, transportProblem } from './transports.js';
export { CONTENT_FILTER, milterAddress, spamFilterUnit, wanted } from './spam-filter.js';
export { LOCAL_CLEANUP, SRS_DEFAULTS, SRS_SECRET, masterEntry, srsBlockLines, srsDomain, srsScope, srsUnit } from './srs.js';
export { SmartHost, TLS_LEVELS } from './vars.js';
export { DOVECOT_AUTH_CONF, SUBMISSION_PARAMS, dovecotAuthConf, submissionLines, submissionScope, submissionUnit } from './submission.js';
export { POLICY_MAP, policyText, tlsPolicyScope, tlsPolicyUnit } from './tls-policy.js';

export default definePlugin({
  name: '@scoped/plugin-mail',
  version: '0.1.0',
  apiVersion: 1,
  // configure-postfix reads system_hostname (myhostname), which net declares.
  dependsOn: ['@scoped/plugin-net'],
  vars: [
    postfixSmarthost,
    postfixTlsLevel,
    postfixSaslHeader,
    postfixRelayMynetworks,
    postfixCustomConfig,
    spamfilter,
    rspamdEnabled,
    rspamdMilter,
    dkimDomains,
    dkimOldKeys,
    mailTransports,
    mailSenderIps,
    postsrsdEnabled,
    mailDnsServers,
    mailDefaultSpf,
    mailDefaultDmarc,
    postfixSubmission,
    postfixTlsPolicy,
    postfixTlsFingerprints,
  ],
  units: [configurePostfix, spamFilterUnit, dkimUnit, transportUnit, senderIpUnit, srsUnit, submissionUnit, tlsPolicyUnit],
  scopes: [
    smartHostScope,
    spamFilterScope,
    piggybackScope,
    dkimScope,
    transportScope,
    senderIpScope,
    srsScope,
    submissionScope,
    tlsPolicyScope,
    deliverabilityScope,
  ],
});
