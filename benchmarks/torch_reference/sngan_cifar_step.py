#!/usr/bin/env python3
"""SNGAN "standard CNN" (SN-DCGAN, Miyato et al. 2018, Table 3) for 32x32x3 -- PyTorch CPU
performance / correctness reference.

The same network as wgan_jax's model dcgan (wgan_jax/models/dcgan.py) at CIFAR-10 size:
Generator   z(128) -> dense 4*4*512 -> BN, ReLU -> reshape 512x4x4
            -> deconv 4x4/s2 512->256, BN, ReLU -> deconv 4x4/s2 256->128, BN, ReLU
            -> deconv 4x4/s2 128->64, BN, ReLU -> conv 3x3 64->3 -> tanh
            (BN after the dense layer is per feature, BatchNorm1d(4*4*512) before the reshape,
            as in the official code and wgan_jax.)
Discriminator (LeakyReLU 0.1 after every conv, spectral norm on every layer,
            torch.nn.utils.parametrizations.spectral_norm, 1 power iteration per forward)
            the official code's widths (chainer-gan-lib SNDCGANDiscriminator, wgan_jax's
            dcgan.CRITIC_CONVS): conv3x3 3->64, conv4x4/s2 64->128, conv3x3 128->128,
            conv4x4/s2 128->256, conv3x3 256->256, conv4x4/s2 256->512, conv3x3 512->512,
            dense 4*4*512 -> 1
            (--d_layout paper: the SNGAN paper's Table 3 widths 3->64, 64->64/s2, 64->128,
            128->128/s2, 128->256, 256->256/s2, 256->512; about half the critic's FLOPs)
Loss: hinge (default) or WGAN; Adam(2e-4, betas (0.5, 0.999)); batch 64; n_dis 1 (or 5).

One training iteration = n_dis critic steps + 1 generator step:
  critic step:    z ~ N(0,I); fake = G(z) without grad; D on cat([real, fake]) (one D call,
                  hence one SN power iteration per step); loss; backward; Adam.
  generator step: D parameters frozen (requires_grad False, only input grads flow through D,
                  as jax.grad w.r.t. G params would do); loss = -mean D(G(z)); backward; Adam.
"Real" images are a fixed pool of uniform[-1,1] tensors (performance does not depend on data;
no dataset download on this machine).

Reported (last stdout line is one JSON object):
  params, analytical forward FLOPs per image of G and D (conv/deconv/dense MACs x 2),
  an analytical training-iteration FLOP model, the FLOPs PyTorch actually executes in one
  iteration (dispatch-mode counter with torch.utils.flop_counter formulas, conv/matmul incl. backward),
  seconds/iteration (median/mean/min/max over --iters after --warmup), images/s,
  achieved GFLOP/s and % of nominal peak; optional fwd/bwd micro-benchmarks and torch.compile.

Examples:
  python sngan_cifar_step.py --n_dis 1 --iters 20
  python sngan_cifar_step.py --n_dis 5 --iters 8
  python sngan_cifar_step.py --mode fwdbwd --compile      # eager vs compiled G/D fwd+bwd
  python sngan_cifar_step.py --n_dis 1 --iters 10 --compile
OMP_WAIT_POLICY defaults to PASSIVE (set it in the environment to override).
"""
import argparse
import copy
import json
import os
import statistics
import time

# libgomp's default spin-waiting collapses 2-thread throughput when other processes share the
# 2 cores; PASSIVE lets idle OpenMP workers sleep.  Must be set before torch is imported.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.utils.parametrizations import spectral_norm  # noqa: E402


# ----------------------------------------------------------------------------- models
class Generator(nn.Module):
    def __init__(self, z_dim=128, bottom=4, ch=512):
        super().__init__()
        self.bottom, self.ch = bottom, ch
        self.fc = nn.Linear(z_dim, bottom * bottom * ch)
        self.bn0 = nn.BatchNorm1d(bottom * bottom * ch)  # per feature, before the reshape
        self.dc1 = nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1)
        self.bn1 = nn.BatchNorm2d(ch // 2)
        self.dc2 = nn.ConvTranspose2d(ch // 2, ch // 4, 4, 2, 1)
        self.bn2 = nn.BatchNorm2d(ch // 4)
        self.dc3 = nn.ConvTranspose2d(ch // 4, ch // 8, 4, 2, 1)
        self.bn3 = nn.BatchNorm2d(ch // 8)
        self.out = nn.Conv2d(ch // 8, 3, 3, 1, 1)

    def forward(self, z):
        h = F.relu(self.bn0(self.fc(z))).view(-1, self.ch, self.bottom, self.bottom)
        h = F.relu(self.bn1(self.dc1(h)))
        h = F.relu(self.bn2(self.dc2(h)))
        h = F.relu(self.bn3(self.dc3(h)))
        return torch.tanh(self.out(h))


# (kernel, stride, c_in, c_out) per conv layer
D_LAYOUTS = {
    # SNGAN paper Table 3(b): channel changes happen in the 3x3 convs
    'paper': [(3, 1, 3, 64), (4, 2, 64, 64), (3, 1, 64, 128), (4, 2, 128, 128),
              (3, 1, 128, 256), (4, 2, 256, 256), (3, 1, 256, 512)],
    # authors' chainer-gan-lib SNDCGANDiscriminator and wgan_jax's model dcgan: channels
    # double in the 4x4/s2 convs (~2x the FLOPs of the paper layout)
    'chainer': [(3, 1, 3, 64), (4, 2, 64, 128), (3, 1, 128, 128), (4, 2, 128, 256),
                (3, 1, 256, 256), (4, 2, 256, 512), (3, 1, 512, 512)],
}


class Discriminator(nn.Module):
    def __init__(self, use_sn=True, slope=0.1, bottom=4, layout='chainer'):
        super().__init__()
        sn = (lambda m: spectral_norm(m, n_power_iterations=1)) if use_sn else (lambda m: m)
        self.slope = slope
        self.convs = nn.ModuleList([sn(nn.Conv2d(ci, co, k, st, 1)) for k, st, ci, co in D_LAYOUTS[layout]])
        self.fc = sn(nn.Linear(bottom * bottom * D_LAYOUTS[layout][-1][3], 1))

    def forward(self, x):
        h = x
        for c in self.convs:
            h = F.leaky_relu(c(h), self.slope)
        return self.fc(h.flatten(1)).view(-1)


# ----------------------------------------------------------------------------- helpers
def count_params(m):
    return sum(p.numel() for p in m.parameters())


def fwd_flops_per_image(model, x):
    """Analytical forward FLOPs (2 x MACs of conv / deconv / dense layers) per image."""
    model = copy.deepcopy(model).eval()
    macs = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.ConvTranspose2d):
            kh, kw = m.kernel_size
            macs[0] += inp[0].numel() * (m.out_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            macs[0] += out.numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            macs[0] += inp[0].numel() * m.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return 2 * macs[0] // x.shape[0]


def count_executed_flops(fn):
    """Run fn() under a minimal TorchDispatchMode that adds up the FLOPs of every executed
    matmul / convolution (forward and backward, incl. double-backward ops) using PyTorch's own
    per-op formulas (torch.utils.flop_counter.flop_registry).  Unlike FlopCounterMode it installs
    no module hooks, so it also works with autograd.grad(create_graph=True)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class _Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            f = flop_registry.get(func._overloadpacket)
            if f is not None:
                _Count.total += f(*args, **kwargs, out_val=out)
            return out

    with _Count():
        fn()
    return _Count.total


def nominal_peak_gflops():
    """cores x MHz x fp32 FLOP/cycle; FLOP/cycle = lanes(16 for AVX-512, 8 for AVX2) x 2 (FMA)
    x 2 FMA units (assumed: Xeon server cores with AVX-512 have two 512-bit FMA ports)."""
    mhz, flags = None, ''
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('cpu MHz') and mhz is None:
                mhz = float(line.split(':')[1])
            if line.startswith('flags') and not flags:
                flags = line
    except OSError:
        pass
    lanes = 16 if 'avx512f' in flags else (8 if 'avx2' in flags else 4)
    cores = os.cpu_count()
    if mhz is None:
        return None, {}
    fpc = lanes * 2 * 2
    return cores * mhz * 1e-3 * fpc, {'cores': cores, 'mhz': mhz, 'fp32_flop_per_cycle': fpc}


def summarize(ts):
    return {'median': statistics.median(ts), 'mean': statistics.fmean(ts), 'min': min(ts),
            'max': max(ts), 'stdev': statistics.stdev(ts) if len(ts) > 1 else 0.0, 'n': len(ts)}


def d_loss_fn(kind, d_real, d_fake):
    if kind == 'hinge':
        return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
    return d_fake.mean() - d_real.mean()


# ----------------------------------------------------------------------------- main
def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--gen_batch', type=int, default=None, help='generator-step batch (default = --batch)')
    p.add_argument('--n_dis', type=int, default=1)
    p.add_argument('--iters', type=int, default=20, help='timed training iterations')
    p.add_argument('--warmup', type=int, default=2, help='untimed iterations (the first also counts FLOPs)')
    p.add_argument('--loss', choices=['hinge', 'wgan'], default='hinge')
    p.add_argument('--lr', type=float, default=2e-4)
    p.add_argument('--betas', type=float, nargs=2, default=(0.5, 0.999))
    p.add_argument('--no_sn', action='store_true', help='ablation: discriminator without spectral norm')
    p.add_argument('--d_layout', choices=sorted(D_LAYOUTS), default='chainer',
                   help="discriminator channel layout: 'chainer' (authors' code and wgan_jax, "
                        "default) or 'paper' (Table 3)")
    p.add_argument('--slope', type=float, default=0.1,
                   help='LeakyReLU slope (paper and wgan_jax 0.1; chainer code 0.2)')
    p.add_argument('--channels_last', action='store_true')
    p.add_argument('--compile', action='store_true', help='torch.compile(G), torch.compile(D) (inductor)')
    p.add_argument('--mode', choices=['train', 'fwdbwd', 'both'], default='train')
    p.add_argument('--fb_reps', type=int, default=10, help='reps for fwd/bwd micro-benchmarks')
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    B = args.batch
    Bg = args.gen_batch or B
    mf = torch.channels_last if args.channels_last else torch.contiguous_format

    G = Generator().to(memory_format=mf)
    D = Discriminator(use_sn=not args.no_sn, slope=args.slope, layout=args.d_layout).to(memory_format=mf)
    G.train()
    D.train()
    optG = torch.optim.Adam(G.parameters(), lr=args.lr, betas=tuple(args.betas))
    optD = torch.optim.Adam(D.parameters(), lr=args.lr, betas=tuple(args.betas))
    real_pool = [(torch.rand(B, 3, 32, 32) * 2 - 1).contiguous(memory_format=mf) for _ in range(8)]

    fg = fwd_flops_per_image(G, torch.randn(2, 128))
    fd = fwd_flops_per_image(D, torch.randn(2, 3, 32, 32))
    critic_flops = B * (fg + 6 * fd)                   # G fwd (no grad) + D fwd/bwd on 2B
    gen_flops = Bg * (3 * fg + 2 * fd)                 # G fwd+bwd, D fwd + input-grad only
    model_iter_flops = args.n_dis * critic_flops + gen_flops
    peak, peak_info = nominal_peak_gflops()

    res = {'script': 'sngan_cifar_step.py', 'arch': 'SNDCGAN-standard-CNN-32x32',
           'torch': torch.__version__, 'threads': torch.get_num_threads(),
           'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'), 'seed': args.seed,
           'batch': B, 'gen_batch': Bg, 'n_dis': args.n_dis, 'loss': args.loss,
           'spectral_norm': not args.no_sn, 'd_layout': args.d_layout, 'slope': args.slope,
           'channels_last': args.channels_last,
           'compile': args.compile, 'adam': [args.lr, *args.betas],
           'params_G': count_params(G), 'params_D': count_params(D),
           'fwd_gflop_per_image_G': fg / 1e9, 'fwd_gflop_per_image_D': fd / 1e9,
           'model_gflop_per_iter': model_iter_flops / 1e9,
           'nominal_peak_gflops': peak, 'peak_info': peak_info,
           'loadavg_start': [round(v, 2) for v in os.getloadavg()]}
    print(f"params G={res['params_G']:,} D={res['params_D']:,}  fwd GFLOP/img G={fg/1e9:.4f} "
          f"D={fd/1e9:.4f}  model GFLOP/iter={model_iter_flops/1e9:.1f}", flush=True)

    Gc = torch.compile(G) if args.compile else G
    Dc = torch.compile(D) if args.compile else D

    if args.mode in ('fwdbwd', 'both'):
        # G / D forward and forward+backward (param grads) at batch B; eager and, with --compile,
        # compiled variants are warmed up first and then timed *interleaved* (eager, compiled,
        # eager, ...) so that load changes from other processes hit both alike.
        z = torch.randn(B, 128)
        x = real_pool[0]
        gout = torch.randn(B, 3, 32, 32).contiguous(memory_format=mf)
        variants = [('eager', G, D)] + ([('compiled', Gc, Dc)] if args.compile else [])
        fns = {}
        for name, g, d in variants:
            def g_fwd(g=g):
                with torch.no_grad():
                    g(z)

            def g_fwdbwd(g=g):
                g(z).backward(gout)

            def d_fwd(d=d):
                with torch.no_grad():
                    d(x)

            def d_fwdbwd(d=d):
                d(x).sum().backward()

            for key, fn, fl in (('G_fwd', g_fwd, fg), ('G_fwdbwd', g_fwdbwd, 3 * fg),
                                ('D_fwd', d_fwd, fd), ('D_fwdbwd', d_fwdbwd, 3 * fd)):
                fns[(name, key)] = (fn, fl)
        keys = ['G_fwd', 'G_fwdbwd', 'D_fwd', 'D_fwdbwd']
        warm_s = {}
        for (name, key), (fn, _) in fns.items():
            t0 = time.perf_counter()
            for _ in range(3 if name == 'compiled' else 2):
                fn()
            warm_s[(name, key)] = time.perf_counter() - t0
        ts = {k: [] for k in fns}
        cs = {k: [] for k in fns}
        for _ in range(args.fb_reps):
            for key in keys:
                for name, _, _ in variants:
                    t, c = time.perf_counter(), time.process_time()
                    fns[(name, key)][0]()
                    ts[(name, key)].append(time.perf_counter() - t)
                    cs[(name, key)].append(time.process_time() - c)
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        fb = {}
        for name, _, _ in variants:
            r = {}
            for key in keys:
                s = summarize(ts[(name, key)])
                s['warmup_s'] = warm_s[(name, key)]
                s['cpu_median'] = statistics.median(cs[(name, key)])
                fl = fns[(name, key)][1]
                s['gflops_per_s'] = B * fl / s['median'] / 1e9
                s['gflop_per_cpu_s'] = B * fl / s['cpu_median'] / 1e9
                r[key] = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in s.items()}
                print(f"[{name}] {key:9s} batch {B}: median {s['median']*1e3:8.1f} ms  "
                      f"{s['gflops_per_s']:6.1f} GFLOP/s  {s['gflop_per_cpu_s']:6.1f} GFLOP/CPU-s "
                      f"(warm-up {s['warmup_s']:.1f}s)", flush=True)
            fb[name] = r
        if args.compile:
            fb['speedup_compiled_vs_eager_wall'] = {
                k: round(fb['eager'][k]['median'] / fb['compiled'][k]['median'], 3) for k in keys}
            fb['speedup_compiled_vs_eager_cpu'] = {
                k: round(fb['eager'][k]['cpu_median'] / fb['compiled'][k]['cpu_median'], 3) for k in keys}
            print('compiled/eager speed-up (wall):', fb['speedup_compiled_vs_eager_wall'])
            print('compiled/eager speed-up (CPU time):', fb['speedup_compiled_vs_eager_cpu'])
        res['fwdbwd'] = fb

    if args.mode in ('train', 'both'):
        state = {'i': 0}

        def next_real():
            state['i'] += 1
            return real_pool[state['i'] % len(real_pool)]

        def train_iter(g, d):
            for _ in range(args.n_dis):
                real = next_real()
                with torch.no_grad():
                    fake = g(torch.randn(B, 128))
                out = d(torch.cat([real, fake]))
                loss_d = d_loss_fn(args.loss, out[:B], out[B:])
                optD.zero_grad(set_to_none=True)
                loss_d.backward()
                optD.step()
            for q in D.parameters():
                q.requires_grad_(False)
            loss_g = -d(g(torch.randn(Bg, 128))).mean()
            optG.zero_grad(set_to_none=True)
            loss_g.backward()
            optG.step()
            for q in D.parameters():
                q.requires_grad_(True)
            return loss_d, loss_g

        # first warm-up iteration: eager, under a FLOP-counting dispatch mode -> FLOPs actually executed
        counted = None
        try:
            t0 = time.perf_counter()
            counted = count_executed_flops(lambda: train_iter(G, D))
            res['flopcount_iter_s'] = round(time.perf_counter() - t0, 2)
        except Exception as e:  # pragma: no cover
            res['flop_counter_error'] = repr(e)
        t0 = time.perf_counter()
        for _ in range(max(args.warmup - 1, 0) + (2 if args.compile else 0)):
            train_iter(Gc, Dc)
        warm_s = time.perf_counter() - t0
        ts, cs = [], []
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(args.iters):
            t, c = time.perf_counter(), time.process_time()
            ld, lg = train_iter(Gc, Dc)
            ts.append(time.perf_counter() - t)
            cs.append(time.process_time() - c)
        cpu_util = (time.process_time() - c0) / (time.perf_counter() - w0)
        s = summarize(ts)
        med = s['median']
        cpu_med = statistics.median(cs)
        tr = {'s_per_iter': {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()},
              'iter_times_s': [round(t, 4) for t in ts],
              'warmup_s_after_flopcount': round(warm_s, 2),
              'iters_per_s': round(1 / med, 4),
              'images_per_s_real': round(args.n_dis * B / med, 2),
              'images_per_s_generated': round((args.n_dis * B + Bg) / med, 2),
              'flopcounter_gflop_per_iter': counted / 1e9 if counted else None,
              'achieved_gflops_model': round(model_iter_flops / med / 1e9, 2),
              'achieved_gflops_counted': round(counted / med / 1e9, 2) if counted else None,
              'process_cpu_util': round(cpu_util, 3),
              # contention-robust view (OMP PASSIVE => CPU time ~ real work of all threads):
              'cpu_s_per_iter_median': round(cpu_med, 4),
              'gflop_per_cpu_s': round((counted or model_iter_flops) / cpu_med / 1e9, 2),
              'est_s_per_iter_if_uncontended': round(cpu_med / args.threads, 4),
              'final_loss_d': round(ld.item(), 6), 'final_loss_g': round(lg.item(), 6)}
        if peak:
            tr['pct_nominal_peak_counted'] = round(100 * (counted or model_iter_flops) / med / 1e9 / peak, 2)
        res['train'] = tr
        print(f"train n_dis={args.n_dis} B={B}: median {med:.3f} s/iter (mean {s['mean']:.3f}, "
              f"min {s['min']:.3f})  {tr['images_per_s_real']} real img/s  "
              f"{tr['achieved_gflops_counted']} GFLOP/s counted  cpu_util {cpu_util:.2f}  "
              f"{tr['gflop_per_cpu_s']} GFLOP per CPU-s", flush=True)

    res['loadavg_end'] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(res))


if __name__ == '__main__':
    main()
