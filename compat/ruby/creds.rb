# compat-ruby: the AWS SDK for Ruby v3 (aws-sdk-core) default chain, unmodified.
# Debian's ruby-aws-sdk-core puts it on Ruby's default load path: no RUBYLIB.
#
# One JSON line per step (PROBE_STEPS, default 1); each step after the first
# waits for a line on stdin. `fresh` is a new Aws::CredentialProviderChain
# resolved now (what a client built now gets: Aws::Plugins::CredentialsConfiguration
# resolves it once, when the client is constructed), the region a client
# resolves with no explicit configuration, and with PROBE_STS_ENDPOINT a signed
# GetCallerIdentity made with that provider (Aws::STS::Client ships inside
# aws-sdk-core, for AssumeRoleCredentials). `held` is step 0's provider asked
# again, as a long-lived client would: RefreshingCredentials only fetches anew
# within 5 minutes of the expiration, so until then it answers from memory.
# Each fetch is bounded at 15 s.
#
# What the chain can do (aws-sdk-core 3.168.1): IMDSv2 with a v1 fallback when
# the token PUT fails; AWS_EC2_METADATA_SERVICE_ENDPOINT and _MODE=IPv6, but
# the endpoint's port is ignored: it always connects to port 80
# (instance_profile_credentials.rb `@port || uri.port`, aws/aws-sdk-ruby#2997),
# so a daemon on another port is reachable only through a network namespace
# where it listens on :80; the container provider only with
# AWS_CONTAINER_CREDENTIALS_RELATIVE_URI at 169.254.170.2, never FULL_URI or an
# authorization token; no region from IMDS. AWS_EC2_METADATA_DISABLED=true is
# honoured (no connection at all).
require 'json'
require 'timeout'
require 'aws-sdk-core'

# Not a StandardError: the SDK's bare `rescue`s must not swallow it.
class ProbeTimeout < Exception; end

FETCH_TIMEOUT_S = 15
VERSION = "aws-sdk-core #{Aws::CORE_GEM_VERSION}".freeze

def msg(e)
  "#{e.class.name}: #{e.message}"
end

def bounded(what)
  Timeout.timeout(FETCH_TIMEOUT_S, ProbeTimeout, "#{what} took over #{FETCH_TIMEOUT_S} s") { yield }
rescue SystemExit, SignalException
  raise
rescue Exception => e # rubocop:disable Lint/RescueException - report whatever the SDK raised
  { 'error' => msg(e) }
end

def no_credentials
  # What a client raises when it has to sign with the chain's nil.
  { 'error' => msg(Aws::Errors::MissingCredentialsError.new) }
end

# The provider asked for credentials, as a client's signer does.
def ask(provider)
  return no_credentials if provider.nil?

  bounded('fetching credentials') do
    c = provider.credentials
    next no_credentials unless c && c.set?

    exp = provider.respond_to?(:expiration) ? provider.expiration : nil
    {
      'akid' => c.access_key_id,
      'expiration' => exp && exp.utc.strftime('%Y-%m-%dT%H:%M:%SZ'),
      'has_token' => !(c.session_token.nil? || c.session_token.empty?),
      'provider' => provider.class.name
    }
  end
end

# The region a client built now resolves (ENV, then the shared config); nil
# when it has none. Static credentials keep the chain out of it.
def region
  Aws::STS::Client.new(credentials: Aws::Credentials.new('probe', 'probe')).config.region
rescue Aws::Errors::MissingRegionError
  nil
end

def fresh
  provider = nil
  v = bounded('resolving the default chain') do
    provider = Aws::CredentialProviderChain.new.resolve
    nil
  end
  v ||= ask(provider)
  begin
    v['region'] = region
  rescue StandardError => e
    v['region'] = nil
    v['region_error'] = msg(e)
  end
  url = ENV['PROBE_STS_ENDPOINT']
  if url && !url.empty? && !v.key?('error')
    r = bounded('GetCallerIdentity') do
      sts = Aws::STS::Client.new(region: 'us-east-1', endpoint: url, credentials: provider)
      { 'arn' => sts.get_caller_identity.arn }
    end
    if r.key?('error')
      v['sts_error'] = r['error']
    else
      v.update(r)
    end
  end
  [v, provider]
end

$stdout.sync = true
steps = Integer(ENV.fetch('PROBE_STEPS', '1'), exception: false) || 1
held = nil
steps.times do |step|
  break if step.positive? && $stdin.gets.nil?

  f, provider = fresh
  h = step.zero? ? nil : ask(held)
  held = provider if step.zero?
  puts JSON.generate('step' => step, 'version' => VERSION, 'fresh' => f, 'held' => h)
end
