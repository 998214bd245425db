<?php
// compat-php: async-aws/core's default chain, unmodified.
// Debian's php-async-aws-core installs under /usr/share/php, on PHP's default
// include_path; its autoload.php pulls in Symfony HttpClient, the contracts
// and psr/log, psr/cache.
//
// One JSON line per step (PROBE_STEPS, default 1); each step after the first
// waits for a line on stdin. `fresh` is the credential provider of a client
// built now (`new StsClient()`: AbstractApi::__construct wraps
// ChainProvider::createDefaultChain() in a CacheProvider, over its own retrying
// HTTP client), read out of the client as it is, and asked with the client's
// own Configuration; `region` is that Configuration's region (async-aws falls
// back to us-east-1, region_default says so); with PROBE_STS_ENDPOINT, a
// GetCallerIdentity signed through a second client's default chain. `held` is
// step 0's provider asked again with step 0's Configuration, as a long-lived
// client would: CacheProvider answers from memory until the expiration (less
// 30 s), and remembers "no credentials" for good. Each fetch is bounded at 15 s.
//
// What the chain can do (async-aws/core 1.18.1): IMDSv1 only, at the fixed
// http://169.254.169.254 (no token, no AWS_EC2_METADATA_* variable, no IPv6
// mode, IMDS cannot be disabled); the container provider only with
// AWS_CONTAINER_CREDENTIALS_RELATIVE_URI at 169.254.170.2, never FULL_URI or an
// authorization token; no region from IMDS. An empty chain is no exception:
// the client sends its requests unsigned.
//
// So this probe always reaches for 169.254.169.254:80, whatever the
// environment says: run it only inside a network namespace whose loopback
// holds that address (as the matrix's scenario 3 does), never on a host that
// may have a real metadata service.
declare(strict_types=1);

require_once 'AsyncAws/Core/autoload.php';

use AsyncAws\Core\AbstractApi;
use AsyncAws\Core\Configuration;
use AsyncAws\Core\Credentials\CacheProvider;
use AsyncAws\Core\Credentials\ChainProvider;
use AsyncAws\Core\Credentials\CredentialProvider;
use AsyncAws\Core\Sts\StsClient;
use Symfony\Component\HttpClient\HttpClient;

const FETCH_TIMEOUT_S = 15;

final class ProbeTimeout extends \RuntimeException
{
}

function version(): string
{
    if (class_exists(\Composer\InstalledVersions::class) && \Composer\InstalledVersions::isInstalled('async-aws/core')) {
        return 'async-aws/core ' . \Composer\InstalledVersions::getPrettyVersion('async-aws/core');
    }
    // Debian's package: its changelog names the upstream version.
    $log = @gzfile('/usr/share/doc/php-async-aws-core/changelog.Debian.gz');
    if ($log && preg_match('/\(([0-9][^)-]*)/', $log[0], $m)) {
        return 'async-aws/core ' . $m[1];
    }

    return 'async-aws/core ?';
}

function msg(\Throwable $e): string
{
    return get_class($e) . ': ' . $e->getMessage();
}

/**
 * Runs $f, returning its array or {"error"} for anything thrown, cut short
 * after FETCH_TIMEOUT_S. SIGALRM cannot interrupt a blocking socket read in
 * PHP's stream layer: the chain's own requests carry a 1 s timeout
 * (InstanceProvider, ContainerProvider), the STS call a max_duration. A
 * timeout the chain swallows (it turns transport errors into null) is still
 * reported as one.
 */
function bounded(string $what, callable $f): array
{
    $alarm = function_exists('pcntl_alarm');
    $timedOut = false;
    if ($alarm) {
        pcntl_async_signals(true);
        pcntl_signal(\SIGALRM, static function () use ($what, &$timedOut) {
            $timedOut = true;
            throw new ProbeTimeout(sprintf('%s took over %d s', $what, FETCH_TIMEOUT_S));
        });
        pcntl_alarm(FETCH_TIMEOUT_S);
    }
    try {
        $r = $f();
    } catch (\Throwable $e) {
        $r = ['error' => msg($e)];
    } finally {
        if ($alarm) {
            pcntl_alarm(0);
        }
    }
    if ($timedOut) {
        return ['error' => msg(new ProbeTimeout(sprintf('%s took over %d s', $what, FETCH_TIMEOUT_S)))];
    }

    return $r;
}

/** A private property, read as it is. */
function peek(object $o, string $class, string $name)
{
    $p = new \ReflectionProperty($class, $name);
    $p->setAccessible(true);

    return $p->getValue($o);
}

/** The class of the chain's provider that answered, when the chain says. */
function answered(CredentialProvider $provider, Configuration $configuration): ?string
{
    try {
        $chain = $provider instanceof CacheProvider ? peek($provider, CacheProvider::class, 'decorated') : $provider;
        if (!$chain instanceof ChainProvider) {
            return get_class($chain);
        }
        $p = peek($chain, ChainProvider::class, 'lastSuccessfulProvider')[spl_object_hash($configuration)] ?? null;

        return $p ? get_class($p) : null;
    } catch (\Throwable $e) {
        return null;
    }
}

/** The provider asked for credentials, as a client's signer does. */
function ask(CredentialProvider $provider, Configuration $configuration): array
{
    return bounded('fetching credentials', static function () use ($provider, $configuration) {
        $c = $provider->getCredentials($configuration);
        if (null === $c) {
            return ['error' => 'NoCredentials: the default chain returned null (async-aws then sends the request unsigned)'];
        }
        $exp = $c->getExpireDate();

        return [
            'akid' => $c->getAccessKeyId(),
            'expiration' => $exp ? $exp->setTimezone(new \DateTimeZone('UTC'))->format('Y-m-d\TH:i:s\Z') : null,
            'has_token' => null !== $c->getSessionToken() && '' !== $c->getSessionToken(),
            'provider' => answered($provider, $configuration),
        ];
    });
}

/** @return array{0: array, 1: ?array{0: CredentialProvider, 1: Configuration}} */
function fresh(): array
{
    $held = null;
    $v = bounded('building a client', static function () use (&$held) {
        $client = new StsClient();
        $held = [peek($client, AbstractApi::class, 'credentialProvider'), $client->getConfiguration()];

        return [];
    });
    if (null === $held) {
        return [$v + ['region' => null], null];
    }
    [$provider, $configuration] = $held;
    $v = ask($provider, $configuration);
    $v['region'] = $configuration->get(Configuration::OPTION_REGION);
    $v['region_default'] = $configuration->isDefault(Configuration::OPTION_REGION);
    $url = getenv('PROBE_STS_ENDPOINT');
    if ($url && !isset($v['error'])) {
        $r = bounded('GetCallerIdentity', static function () use ($url) {
            // Its own default chain; only the STS request's transport is bounded
            // (no retries), which AbstractApi would otherwise retry for up to a minute.
            $http = HttpClient::create(['max_duration' => 10.0]);
            $sts = new StsClient(['endpoint' => $url, 'region' => 'us-east-1'], null, $http);

            return ['arn' => $sts->getCallerIdentity()->getArn()];
        });
        if (isset($r['error'])) {
            $v['sts_error'] = $r['error'];
        } else {
            $v += $r;
        }
    }

    return [$v, $held];
}

$steps = (int) (getenv('PROBE_STEPS') ?: '1');
if ($steps < 1) {
    $steps = 1;
}
$version = version();
$held = null;
for ($step = 0; $step < $steps; ++$step) {
    if ($step > 0 && false === fgets(\STDIN)) {
        break;
    }
    [$f, $chain] = fresh();
    $h = null;
    if ($step > 0) {
        $h = $held ? ask($held[0], $held[1]) : ['error' => 'NoCredentials: no client could be built at step 0'];
    } else {
        $held = $chain;
    }
    fwrite(\STDOUT, json_encode(['step' => $step, 'version' => $version, 'fresh' => $f, 'held' => $h],
        \JSON_UNESCAPED_SLASHES) . "\n");
    fflush(\STDOUT);
}
