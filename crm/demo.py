"""A demo CRM with known duplicates: Russian and English contacts, companies and leads.

``generate_demo(store, sizes, seed)`` fills an empty database; ``build_demo_frames`` returns the same
tables as DataFrames without a database; ``generate_contacts_frames`` makes the contacts alone (for
benchmarks at a million records, with the same code the demo uses).

The truth (table ``demo_truth``) says which records are one real entity. Only evaluation reads it.

Cluster format: ``"<entity type>:<id>"``, the type and id of the record the others were copied from
(the original), e.g. ``contact:123``. Every record has a row; a record alone is its own cluster
(``contact:7`` for contact 7). Clusters are shared across entity types: a lead typed in again for an
existing contact has that contact's cluster (``contact:123``), a lead for an existing company that
company's cluster (``company:45``). Two records are the same real entity exactly when their clusters
are equal. Note that the original's id is not always the smallest one: now and then a duplicate was
created before the record it was copied from (ids follow the creation time).

Note format: for a duplicate, the noise kinds applied to it joined by ``+``, e.g.
``translit+phone_format`` (``lead_of_contact``/``lead_of_company`` first for a lead that repeats a
client). For an original, ``original`` followed by what makes it hard, e.g.
``original+family+placeholder_phone``.

Noise kinds on duplicates (each gets 1 to 3):
- names: ``typo`` (one insertion, deletion, substitution or transposition), ``translit`` (Cyrillic to
  Latin in one of several systems, informal ones included, or English names to Cyrillic),
  ``swap_names``, ``fullname_one_field``, ``nickname``, ``patronymic_dropped``, ``patronymic_added``,
  ``case_spaces``, ``yo_e`` (ё written as е or back), ``sparse`` (optional fields left empty);
- company titles: ``legal_form_changed``, ``legal_form_dropped``, ``legal_form_added``, ``quotes``,
  ``title_translit``, ``typo``, ``case_spaces``, ``tax_id_dropped``, ``website_format``;
- communications: ``phone_format``, ``phone_ext``, ``phone_dropped``, ``phone_added``, ``email_case``,
  ``gmail_dots``, ``plus_tag``, ``email_dropped``, ``email_added``.

Hard negatives (different clusters; their originals carry the tag in the note): ``colleague_switchboard``
and ``colleague_info_email`` (contacts giving their company's office phone or info@ address),
``namesake`` (another original has the same last, first and middle name), ``family`` (same surname,
shared home phone and often e-mail), ``father_son`` (same first and last name, different patronymic and
birthdate), ``similar_name`` (companies Ромашка / Ромашка Плюс / Ромашка-2 with different INN).
Real-CRM junk on originals: ``placeholder_phone``, ``placeholder_email``, ``invalid_email``,
``empty_name``.

Deterministic: the same seed and sizes give the same rows (timestamps are based on 2024-01-01, never
on the clock).
"""

from __future__ import annotations

import bisect
import logging
import random
import re
import string
import time
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property, lru_cache

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm import schema
from crm.gcpause import collector_paused
from crm.store import Store

log = logging.getLogger(__name__)

RU_SHARE = 0.75
START = np.datetime64("2016-01-01T00:00:00", "s")
END = np.datetime64("2024-01-01T00:00:00", "s")  # "now" of the demo CRM
DAY = 86_400

SOURCES = ["web", "call", "email", "exhibition", "partner", "import", "advertising", "recommendation",
           "webform", "other"]
SOURCE_P = [24, 20, 14, 7, 8, 8, 6, 6, 5, 2]

# Seed streams: each part draws from its own generator so that parts do not shift one another.
_PART_EMPLOYERS, _PART_CONTACTS, _PART_COMPANIES, _PART_LEADS, _PART_LEAD_PEOPLE, _PART_LINKS = range(1, 7)


def _rngs(seed: int, part: int) -> tuple[np.random.Generator, random.Random]:
    return np.random.default_rng([seed, part]), random.Random(seed * 1_000_003 + part)


def _const(n: int, value) -> np.ndarray:
    """An object array of one shared value (np.full would make n copies of a string)."""
    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


def _p(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _zipf(n: int, a: float = 0.7, shift: float = 5.0) -> np.ndarray:
    """Popularity weights: the first names of a list are the common ones."""
    return _p(1.0 / (np.arange(n) + shift) ** a)


# =============================================================================================
# Vocabulary

_RU_MALE = """
Александр:Александрович:Александровна:Саша,Шура,Саня
Сергей:Сергеевич:Сергеевна:Серёжа,Серёга
Дмитрий:Дмитриевич:Дмитриевна:Дима,Митя
Андрей:Андреевич:Андреевна:Андрюша
Алексей:Алексеевич:Алексеевна:Лёша,Алёша,Лёха
Максим:Максимович:Максимовна:Макс
Евгений:Евгеньевич:Евгеньевна:Женя
Иван:Иванович:Ивановна:Ваня
Михаил:Михайлович:Михайловна:Миша
Владимир:Владимирович:Владимировна:Вова,Володя
Николай:Николаевич:Николаевна:Коля
Артём:Артёмович:Артёмовна:Тёма
Игорь:Игоревич:Игоревна:
Олег:Олегович:Олеговна:
Павел:Павлович:Павловна:Паша
Роман:Романович:Романовна:Рома
Виктор:Викторович:Викторовна:Витя
Антон:Антонович:Антоновна:Тоша
Юрий:Юрьевич:Юрьевна:Юра
Денис:Денисович:Денисовна:
Константин:Константинович:Константиновна:Костя
Кирилл:Кириллович:Кирилловна:Кирюша
Илья:Ильич:Ильинична:Илюша
Василий:Васильевич:Васильевна:Вася
Вячеслав:Вячеславович:Вячеславовна:Слава
Анатолий:Анатольевич:Анатольевна:Толя
Владислав:Владиславович:Владиславовна:Влад,Слава
Георгий:Георгиевич:Георгиевна:Жора,Гоша
Григорий:Григорьевич:Григорьевна:Гриша
Борис:Борисович:Борисовна:Боря
Валерий:Валерьевич:Валерьевна:Валера
Геннадий:Геннадьевич:Геннадьевна:Гена
Леонид:Леонидович:Леонидовна:Лёня
Пётр:Петрович:Петровна:Петя
Фёдор:Фёдорович:Фёдоровна:Федя
Степан:Степанович:Степановна:Стёпа
Станислав:Станиславович:Станиславовна:Стас
Никита:Никитич:Никитична:
Тимур:Тимурович:Тимуровна:
Руслан:Русланович:Руслановна:
Вадим:Вадимович:Вадимовна:Вадик
Ярослав:Ярославович:Ярославовна:Ярик,Слава
Арсений:Арсеньевич:Арсеньевна:Сеня
Матвей:Матвеевич:Матвеевна:Мотя
Егор:Егорович:Егоровна:
Семён:Семёнович:Семёновна:Сёма
Эдуард:Эдуардович:Эдуардовна:Эдик
Валентин:Валентинович:Валентиновна:Валя
Лев:Львович:Львовна:Лёва
Яков:Яковлевич:Яковлевна:Яша
"""

_RU_FEMALE = """
Елена:Лена Ольга:Оля Татьяна:Таня Наталья:Наташа Ирина:Ира Анна:Аня Светлана:Света Мария:Маша
Екатерина:Катя Юлия:Юля Анастасия:Настя Марина: Людмила:Люда,Мила Галина:Галя Дарья:Даша Оксана:
Надежда:Надя Виктория:Вика Алёна: Ксения:Ксюша Евгения:Женя Валентина:Валя Кристина: Полина:Поля
Елизавета:Лиза Алина: Вера: Нина: Софья:Соня Лариса:Лара Любовь:Люба Жанна: Яна: Вероника:Ника
Диана: Маргарита:Рита Александра:Саша,Шура Тамара: Зоя: Лидия:Лида
"""

_RU_SURNAMES = """
Иванов Смирнов Кузнецов Попов Васильев Петров Соколов Михайлов Новиков Фёдоров Морозов Волков Алексеев
Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев Орлов Андреев Макаров Никитин Захаров Зайцев
Соловьёв Борисов Яковлев Григорьев Романов Воробьёв Сергеев Кузьмин Фролов Александров Дмитриев Королёв
Гусев Киселёв Ильин Максимов Поляков Сорокин Виноградов Ковалёв Белов Медведев Антонов Тарасов Жуков
Баранов Филиппов Комаров Давыдов Беляев Герасимов Богданов Осипов Сидоров Матвеев Титов Марков Миронов
Крылов Куликов Карпов Власов Мельников Денисов Гаврилов Тихонов Казаков Афанасьев Данилов Савельев
Тимофеев Фомин Чернов Абрамов Мартынов Ефимов Федотов Щербаков Назаров Калинин Исаев Чернышёв Быков
Маслов Родионов Коновалов Лазарев Воронин Климов Филатов Пономарёв Голубев Кудрявцев Прохоров Наумов
Потапов Журавлёв Овчинников Трофимов Леонов Соболев Ермаков Колесников Гончаров Емельянов Никифоров
Грачёв Котов Гришин Ефремов Архипов Громов Кириллов Малышев Панов Моисеев Румянцев Акимов Кондратьев
Бирюков Горбунов Анисимов Галкин Лукьянов Михеев Скворцов Юдин Белоусов Нестеров Симонов Харитонов
Князев Цветков Левин Воронов Аксёнов Мальцев Логинов Горшков Савин Краснов Майоров Демидов Елисеев
Рыбаков Сафонов Плотников Хохлов Жданов Руденко Шевченко Бондаренко Ткаченко Кравченко Коваленко
Черных Седых Островский Вишневский Покровский Жуковский Успенский Толстой Трубецкой Лаптев Суханов Зуев
Блинов Шестаков Кошелев Третьяков Мухин Дьячков Носов Ершов Рябов Пестов Костин Лыков Силин Кононов Гордеев
Шилов Гуляев Зимин Бобров Рожков Соломин Кулагин Тетерин Пахомов Корнилов Шубин Фадеев Лапин Дроздов
Евдокимов Субботин Волошин Кудрин Шаров Шарапов Крюков Мишин Рыбин Самойлов Сазонов Корнеев Большаков
Веселов Мамонтов Исаков Селезнёв Русаков Гурьев Мясников Уваров Карасёв Зверев Шишкин Нефёдов Лаврентьев
Сычёв Щукин Тарасенко Литвинов Жильцов Кирсанов Лобанов Полетаев
"""

_EN_MALE = """
James:Джеймс:Jim,Jimmy,Jamie John:Джон:Jack,Johnny Robert:Роберт:Bob,Rob,Bobby Michael:Майкл:Mike,Mick
William:Уильям:Bill,Will,Billy,Liam David:Дэвид:Dave Richard:Ричард:Rick,Dick,Rich Joseph:Джозеф:Joe
Thomas:Томас:Tom,Tommy Charles:Чарльз:Charlie,Chuck Christopher:Кристофер:Chris Daniel:Дэниел:Dan,Danny
Matthew:Мэтью:Matt Anthony:Энтони:Tony Mark:Марк: Steven:Стивен:Steve Paul:Пол: Andrew:Эндрю:Andy,Drew
Kevin:Кевин: Brian:Брайан: George:Джордж: Edward:Эдвард:Ed,Ted,Eddie Peter:Питер:Pete
Henry:Генри:Harry,Hank Patrick:Патрик:Pat Benjamin:Бенджамин:Ben Samuel:Сэмюэл:Sam
Nicholas:Николас:Nick Jonathan:Джонатан:Jon Timothy:Тимоти:Tim Gregory:Грегори:Greg
Alexander:Александер:Alex Oliver:Оливер:Ollie Kenneth:Кеннет:Ken Ronald:Рональд:Ron Donald:Дональд:Don
Ryan:Райан: Jacob:Джейкоб:Jake Gary:Гари: Eric:Эрик: Stephen:Стивен:Steve Justin:Джастин: Scott:Скотт:
Frank:Фрэнк: Raymond:Рэймонд:Ray Jeffrey:Джеффри:Jeff Joshua:Джошуа:Josh Jerry:Джерри: Dennis:Деннис:
Walter:Уолтер:Walt Harold:Гарольд:Harry Douglas:Дуглас:Doug Nathan:Натан:Nate Adam:Адам: Simon:Саймон:
Luke:Люк: Philip:Филип:Phil Lawrence:Лоуренс:Larry Frederick:Фредерик:Fred,Freddie
"""

_EN_FEMALE = """
Mary:Мэри: Patricia:Патриция:Pat,Patty,Trish Jennifer:Дженнифер:Jen,Jenny Linda:Линда:
Elizabeth:Элизабет:Liz,Beth,Betty,Lizzie Barbara:Барбара:Barb Susan:Сьюзан:Sue,Susie Jessica:Джессика:Jess
Sarah:Сара: Karen:Карен: Lisa:Лиза: Nancy:Нэнси: Margaret:Маргарет:Maggie,Meg,Peggy Sandra:Сандра:Sandy
Emily:Эмили:Em Michelle:Мишель:Shelly Katherine:Кэтрин:Kate,Kathy,Katie Rebecca:Ребекка:Becky
Laura:Лора: Helen:Хелен: Emma:Эмма: Olivia:Оливия:Liv Victoria:Виктория:Vicky,Tori Rachel:Рейчел:
Amanda:Аманда:Mandy Samantha:Саманта:Sam Abigail:Эбигейл:Abby Charlotte:Шарлотта:Lottie
Deborah:Дебора:Debbie,Deb Christine:Кристин:Chris Alice:Элис: Julia:Джулия:Julie Dorothy:Дороти:Dot
Carol:Кэрол: Amy:Эми: Kimberly:Кимберли:Kim Donna:Донна: Angela:Анджела:Angie Melissa:Мелисса:Mel
Stephanie:Стефани:Steph Nicole:Николь:Nikki Heather:Хизер: Ruth:Рут: Sharon:Шэрон: Cynthia:Синтия:Cindy
Kathleen:Кэтлин:Kathy Anne:Энн: Lucy:Люси: Grace:Грейс: Hannah:Ханна: Sophie:Софи: Chloe:Хлоя:
Alexandra:Александра:Alex,Lexi
"""

_EN_SURNAMES = """
Smith:Смит Johnson:Джонсон Williams:Уильямс Brown:Браун Jones:Джонс Miller:Миллер Davis:Дэвис
Wilson:Уилсон Anderson:Андерсон Taylor:Тейлор Thomas:Томас Moore:Мур Martin:Мартин Jackson:Джексон
Thompson:Томпсон White:Уайт Harris:Харрис Clark:Кларк Lewis:Льюис Robinson:Робинсон Walker:Уокер
Young:Янг Allen:Аллен King:Кинг Wright:Райт Scott:Скотт Green:Грин Baker:Бейкер Adams:Адамс
Nelson:Нельсон Hill:Хилл Campbell:Кэмпбелл Mitchell:Митчелл Roberts:Робертс Carter:Картер
Phillips:Филлипс Evans:Эванс Turner:Тернер Parker:Паркер Collins:Коллинз Edwards:Эдвардс
Stewart:Стюарт Morris:Моррис Murphy:Мерфи Cook:Кук Rogers:Роджерс Morgan:Морган Cooper:Купер
Peterson:Петерсон Reed:Рид Bailey:Бейли Bell:Белл Kelly:Келли Howard:Говард Ward:Уорд Cox:Кокс
Richardson:Ричардсон Wood:Вуд Watson:Уотсон Brooks:Брукс Bennett:Беннетт Gray:Грей Hughes:Хьюз
Price:Прайс Sanders:Сандерс Myers:Майерс Long:Лонг Ross:Росс Foster:Фостер Hall:Холл Lee:Ли
Walsh:Уолш O'Brien:О'Брайен Fitzgerald:Фицджеральд Murray:Мюррей Graham:Грэм Ellis:Эллис
Fisher:Фишер Hunt:Хант Palmer:Палмер Spencer:Спенсер Barnes:Барнс Henderson:Хендерсон Coleman:Коулман
Jenkins:Дженкинс Perry:Перри Powell:Пауэлл Butler:Батлер Simmons:Симмонс Patterson:Паттерсон Russell:Рассел
Griffin:Гриффин Hayes:Хейз Bryant:Брайант Hamilton:Гамильтон Wallace:Уоллес Woods:Вудс Cole:Коул West:Уэст
Jordan:Джордан Reynolds:Рейнольдс Marshall:Маршалл Owens:Оуэнс Harrison:Харрисон Gibson:Гибсон
Kennedy:Кеннеди Wells:Уэллс Webb:Уэбб Simpson:Симпсон Stevens:Стивенс Tucker:Такер Porter:Портер
Hunter:Хантер Hicks:Хикс Crawford:Кроуфорд Boyd:Бойд Mason:Мейсон Warren:Уоррен Dixon:Диксон Burns:Бернс
Gordon:Гордон Shaw:Шоу Holmes:Холмс Rice:Райс Robertson:Робертсон Black:Блэк Daniels:Дэниелс Mills:Миллс
Nichols:Николс Grant:Грант Knight:Найт Ferguson:Фергюсон Stone:Стоун Hawkins:Хокинс Dunn:Данн
Perkins:Перкинс Hudson:Хадсон Gardner:Гарднер Payne:Пейн Pierce:Пирс Berry:Берри Matthews:Мэтьюз
Arnold:Арнольд Wagner:Вагнер Willis:Уиллис Watkins:Уоткинс Olson:Олсон Carroll:Кэрролл Duncan:Дункан
Snyder:Снайдер Hart:Харт Cunningham:Каннингем Bradley:Брэдли Lane:Лейн Andrews:Эндрюс Harper:Харпер
Fox:Фокс Riley:Райли Armstrong:Армстронг Carpenter:Карпентер Weaver:Уивер Lawrence:Лоуренс
Elliott:Эллиотт Chapman:Чепмен Sutton:Саттон Barker:Баркер Newman:Ньюман Lloyd:Ллойд O'Connor:О'Коннор
McCarthy:Маккарти MacLeod:Маклауд
"""

# city:area codes:weight (Russian landline area codes; the subscriber number fills 10 digits)
_RU_CITIES = """
Москва:495,499:30; Санкт-Петербург:812:12; Новосибирск:383:4; Екатеринбург:343:4; Казань:843:3;
Нижний Новгород:831:3; Челябинск:351:2; Самара:846:2; Омск:3812:2; Ростов-на-Дону:863:3; Уфа:347:2;
Красноярск:391:2; Воронеж:473:2; Пермь:342:2; Волгоград:8442:2; Краснодар:861:3; Саратов:8452:1;
Тюмень:3452:1; Ижевск:3412:1; Барнаул:3852:1; Иркутск:3952:1; Хабаровск:4212:1; Владивосток:423:1;
Ярославль:4852:1; Калининград:4012:1; Томск:3822:1; Сочи:862:1
"""
# city:country:area codes:weight
_EN_CITIES = """
New York:us:212,646:8; London:uk:20:10; Manchester:uk:161:3; San Francisco:us:415:3; Chicago:us:312:3;
Boston:us:617:2; Washington:us:202:2; Birmingham:uk:121:2; Edinburgh:uk:131:2; Seattle:us:206:2;
Austin:us:512:1; Denver:us:303:1; Leeds:uk:113:1; Miami:us:305:1
"""

_RU_STREETS = ("Ленина Мира Советская Гагарина Пушкина Садовая Лесная Центральная Молодёжная Школьная "
               "Октябрьская Профсоюзная Тверская Строителей Заводская Комсомольская Набережная Кирова").split()
_EN_STREETS = ["Main St", "Oak Avenue", "High Street", "Park Road", "Church Street", "Market Street",
               "Broadway", "King Street", "Elm Street", "Victoria Road", "Mill Lane", "5th Avenue"]

_RU_POSTS = ["Директор", "Генеральный директор", "Коммерческий директор", "Финансовый директор",
             "Главный бухгалтер", "Бухгалтер", "Менеджер по продажам", "Менеджер по закупкам",
             "Руководитель отдела продаж", "Специалист по закупкам", "Инженер", "Главный инженер", "Юрист",
             "Маркетолог", "Офис-менеджер", "Секретарь", "Логист", "IT-директор", "Системный администратор",
             "Начальник отдела снабжения", "Технический директор", "HR-менеджер", "Аналитик"]
_EN_POSTS = ["CEO", "Managing Director", "Sales Manager", "Procurement Manager", "Head of IT", "CFO",
             "Accountant", "Office Manager", "Marketing Manager", "Operations Director", "Engineer",
             "Legal Counsel", "Purchasing Agent", "Account Executive", "CTO", "HR Manager", "Consultant"]
_RU_COMMENTS = ["Постоянный клиент", "Интересовался доставкой", "Перезвонить после 15:00", "Скидка 5%",
                "VIP", "Пришёл с выставки", "Просил не звонить по понедельникам", "Работает с конкурентом"]
_EN_COMMENTS = ["Prefers e-mail", "Call after 3 pm", "Key account", "Met at the expo", "Asked for a discount",
                "Decision maker"]

_RU_COMPANY_ROOTS = ("Ромашка Вектор Альфа Омега Гранит Меридиан Восток Сибирь Радуга Лотос Орион Атлант "
                     "Феникс Прогресс Импульс Кристалл Стандарт Монолит Горизонт Эталон Аврора Спектр Темп "
                     "Квант Союз Заря Рассвет Север Юпитер Пегас Титан Палитра Берёзка Парус Магистраль "
                     "Фортуна Континент Гарант Вертикаль Перспектива Альтаир Бриз Вега Гелиос Дельта Европа Зенит "
                     "Исток Лидер Магнит Невский Олимп Полюс Сатурн Тайга Факел Эверест Янтарь Байкал Волна Гамма "
                     "Диалог Ермак Звезда Идеал Кедр Ладога Миллениум Ника Октава Пульсар Ритм Сигма Триумф Уют "
                     "Формат Хронос Цитадель Эдельвейс Азимут Бастион Визит Гефест Держава Енисей Заречье Калина "
                     "Луч Меркурий Новатор Опора Платформа Рубин Сфера Тандем Успех Фрегат Чайка Шторм Экспресс "
                     "Юнона Ярус").split()
_RU_STEMS_A = ("Строй Техно Агро Мед Энерго Нефте Авто Пром Транс Торг Софт Электро Тепло Газ Фарм Эко Инфо Евро "
               "Урал Волга Нева Сиб Металл Хим Лес Вод Спец Гео Хлеб Мебель Текстиль Стекло Бетон Кабель Нано Био "
               "Дор Интер Комп Теле Лифт Кран Бур Окна Свет").split()
_RU_STEMS_B = ("сервис строй торг инвест групп комплект снаб трейд маркет лайн систем монтаж проект холдинг "
               "ресурс тех сбыт пром альянс союз мир центр профи плюс").split()
_RU_NAME_PREFIX = ["ТД", "ГК", "НПО", "ПКФ", "ТК", "СК"]
_EN_COMPANY_ROOTS = """
Acme:Акме Northwind:Нортвинд Contoso:Контосо Globex:Глобекс Initech:Инитек Umbrella:Амбрелла
Summit:Саммит Pinnacle:Пиннакл Redwood:Редвуд Keystone:Кистоун Evergreen:Эвергрин Horizon:Хорайзон
Nimbus:Нимбус Orbit:Орбит Atlas:Атлас Zenith:Зенит Falcon:Фалкон Harbor:Харбор Vertex:Вертекс
Bluestone:Блустоун Silverline:Сильверлайн Brightpath:Брайтпас Ironclad:Айронклад Quantum:Квантум
Apex:Эйпекс Sterling:Стерлинг Oakridge:Оукридж Crescent:Кресент Lighthouse:Лайтхаус Meridian:Меридиан
Beacon:Бикон Cascade:Каскейд Cobalt:Кобальт Crestview:Крествью Delta:Дельта Eastgate:Истгейт Fairway:Фэйрвей
Frontier:Фронтир Granite:Гранит Greenfield:Гринфилд Highland:Хайленд Insight:Инсайт Juniper:Джунипер
Lakeside:Лейксайд Liberty:Либерти Maple:Мэйпл Momentum:Моментум Northstar:Нортстар Oasis:Оазис
Paragon:Парагон Pioneer:Пайонир Prairie:Прери Prime:Прайм Riverside:Риверсайд Sapphire:Сапфир
Sentinel:Сентинел Skyline:Скайлайн Spectrum:Спектрум Sunrise:Санрайз Trinity:Тринити Unity:Юнити
Vanguard:Вэнгард Westfield:Вестфилд Willow:Уиллоу Clearwater:Клируотер Goldleaf:Голдлиф Hillcrest:Хиллкрест
"""
_EN_COMPANY_WORDS = """
Systems:Системс Solutions:Солюшнс Logistics:Логистикс Trading:Трейдинг Consulting:Консалтинг Group:Груп
Labs:Лабс Partners:Партнерс Technologies:Текнолоджис Foods:Фудс Energy:Энерджи Media:Медиа
Industries:Индастриз Capital:Кэпитал Plus:Плюс International:Интернешнл Holdings:Холдингс
"""
_SIMILAR_RU = ["-2", " Плюс", "-М", " Групп", "+", "-Юг", " 2000", " Сервис", "-Центр"]
_SIMILAR_EN = [" 2", " Plus", " Group", " International", " Holdings", " Digital"]

# Legal forms: code -> (short, long, Latin short, English equivalent)
_RU_FORMS = {
    "ООО": ("ООО", "Общество с ограниченной ответственностью", "OOO", "LLC"),
    "АО": ("АО", "Акционерное общество", "AO", "JSC"),
    "ЗАО": ("ЗАО", "Закрытое акционерное общество", "ZAO", "CJSC"),
    "ПАО": ("ПАО", "Публичное акционерное общество", "PAO", "PJSC"),
    "ИП": ("ИП", "Индивидуальный предприниматель", "IP", "Sole Proprietor"),
    "ГУП": ("ГУП", "Государственное унитарное предприятие", "GUP", "SUE"),
}
_RU_FORM_P = {"ООО": 58, "АО": 9, "ЗАО": 4, "ПАО": 1, "ИП": 12, "ГУП": 2, None: 14}
# English forms: code -> (short, long, Cyrillic)
_EN_FORMS = {
    "Inc.": ("Inc.", "Incorporated", "Инк."), "LLC": ("LLC", "Limited Liability Company", "ЛЛС"),
    "Ltd": ("Ltd", "Limited", "Лтд"), "Corp.": ("Corp.", "Corporation", "Корп."),
    "PLC": ("PLC", "Public Limited Company", "ПЛС"), "Co.": ("Co.", "Company", "Ко."),
}
_EN_FORM_P = {"Inc.": 30, "LLC": 25, "Ltd": 22, "Corp.": 8, "PLC": 3, "Co.": 4, None: 8}
_QUOTES = {"guillemets": ("«", "»"), "straight": ('"', '"'), "none": ("", ""), "low": ("„", "“"),
           "curly": ("“", "”"), "single": ("'", "'"), "doubled": ('""', '""')}
_RU_QUOTE_P = {"guillemets": 50, "straight": 35, "none": 10, "low": 5}
_INDUSTRIES = ["IT", "TELECOM", "MANUFACTURING", "BANKING", "CONSULTING", "FINANCE", "GOVERNMENT", "DELIVERY",
               "ENTERTAINMENT", "NOTPROFIT", "OTHER"]
_INDUSTRY_P = [18, 5, 20, 3, 10, 6, 3, 12, 4, 2, 17]

_PUBLIC_RU = {"mail.ru": 30, "yandex.ru": 22, "gmail.com": 20, "bk.ru": 5, "list.ru": 5, "inbox.ru": 4,
              "rambler.ru": 5, "ya.ru": 3, "outlook.com": 2}
_PUBLIC_EN = {"gmail.com": 45, "outlook.com": 15, "yahoo.com": 15, "hotmail.com": 10, "icloud.com": 8,
              "aol.com": 3, "hotmail.co.uk": 4}
_PLACEHOLDER_PHONES = ["+7 (000) 000-00-00", "нет", "-", "0", "00000", "неизвестно", "123", "+7 (999) 999-99-99"]
_PLACEHOLDER_EMAILS = ["test@test.ru", "noemail@mail.ru", "no@no.ru", "нет", "-", "email@example.com",
                       "a@a.ru", "noreply@test.com"]


def _pairs(text: str, sep: str = ":") -> list[list[str]]:
    return [item.split(sep) for item in text.split()]


@dataclass(frozen=True)
class _Names:
    """One list of first names or surnames, with ё-less spellings and popularity weights."""
    name: np.ndarray      # as written with ё
    name_e: np.ndarray    # ё written as е (most people write it so)
    p: np.ndarray

    @classmethod
    def of(cls, names: list[str]) -> _Names:
        arr = np.array(names, dtype=object)
        return cls(arr, np.array([s.replace("ё", "е") for s in names], dtype=object), _zipf(len(names)))


class _Vocab:
    def __init__(self) -> None:
        male = [line.split(":") for line in _RU_MALE.split()]
        female = _pairs(_RU_FEMALE)
        en_m, en_f, en_last = _pairs(_EN_MALE), _pairs(_EN_FEMALE), _pairs(_EN_SURNAMES)
        ru_last = _RU_SURNAMES.split()
        self.first = {"ru_m": _Names.of([m[0] for m in male]), "ru_f": _Names.of([f[0] for f in female]),
                      "en_m": _Names.of([m[0] for m in en_m]), "en_f": _Names.of([f[0] for f in en_f])}
        self.patr_m = _Names.of([m[1] for m in male])
        self.patr_f = _Names.of([m[2] for m in male])
        self.last_ru_m = _Names.of(ru_last)
        self.last_ru_f = _Names.of([_feminine(s) for s in ru_last])
        self.last_en = _Names.of([s[0] for s in en_last])
        self.nicknames: dict[str, list[str]] = {}
        for row in male + female + en_m + en_f:
            full, nicks = row[0], row[-1]
            if nicks:
                self.nicknames[full] = nicks.split(",")
                self.nicknames[full.replace("ё", "е")] = nicks.split(",")
        # English words with their usual Cyrillic spelling (translit noise on English records)
        self.cyrillic = {row[0]: row[1] for row in en_m + en_f + en_last}
        for row in _pairs(_EN_COMPANY_ROOTS) + _pairs(_EN_COMPANY_WORDS):
            self.cyrillic[row[0]] = row[1]
        for short, _long, cyr in _EN_FORMS.values():
            self.cyrillic[short] = cyr
        # ё spellings of names usually written with е (for the yo_e noise)
        self.yo = {}
        for arr in (self.first["ru_m"].name, self.first["ru_f"].name, self.patr_m.name, self.patr_f.name,
                    self.last_ru_m.name, self.last_ru_f.name):
            for s in arr:
                if "ё" in s:
                    self.yo[s.replace("ё", "е")] = s
        ru_c = [c.strip().split(":") for c in _RU_CITIES.split(";")]
        self.ru_cities = np.array([c[0] for c in ru_c], dtype=object)
        self.ru_city_areas = [c[1].split(",") for c in ru_c]
        self.ru_city_p = _p([int(c[2]) for c in ru_c])
        en_c = [c.strip().split(":") for c in _EN_CITIES.split(";")]
        self.en_cities = np.array([c[0] for c in en_c], dtype=object)
        self.en_city_country = np.array([c[1] for c in en_c], dtype=object)
        self.en_city_areas = [c[2].split(",") for c in en_c]
        self.en_city_p = _p([int(c[3]) for c in en_c])
        self.ru_area = np.array([[int(a[0]), int(a[-1])] for a in self.ru_city_areas], dtype=np.int64)
        self.ru_alen = np.array([[len(a[0]), len(a[-1])] for a in self.ru_city_areas], dtype=np.int64)
        self.en_area = np.array([[int(a[0]), int(a[-1])] for a in self.en_city_areas], dtype=np.int64)
        self.en_alen = np.array([[len(a[0]), len(a[-1])] for a in self.en_city_areas], dtype=np.int64)
        self.en_roots = [r[0] for r in _pairs(_EN_COMPANY_ROOTS)]
        self.en_words = [r[0] for r in _pairs(_EN_COMPANY_WORDS)][:14]  # the rest name similar companies

    def area_code(self, ru: np.ndarray, ru_city: np.ndarray, en_city: np.ndarray, pick: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Landline area code (as int) and its length, for each row's city; ``pick`` chooses among two."""
        area = np.where(ru, self.ru_area[ru_city, pick], self.en_area[en_city, pick])
        alen = np.where(ru, self.ru_alen[ru_city, pick], self.en_alen[en_city, pick])
        return area, alen


def _feminine(surname: str) -> str:
    for male, female in (("ский", "ская"), ("цкий", "цкая"), ("ой", "ая"), ("ов", "ова"), ("ёв", "ёва"),
                         ("ев", "ева"), ("ин", "ина"), ("ын", "ына")):
        if surname.endswith(male):
            return surname[: -len(male)] + female
    return surname  # Шевченко, Черных: the same for both


@lru_cache(maxsize=1)
def _vocab() -> _Vocab:
    return _Vocab()


# =============================================================================================
# Transliteration

_CYR = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
_ICAO = dict(zip(_CYR, ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "i", "k", "l", "m", "n", "o", "p",
                        "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "ie", "y", "", "e", "iu", "ia"]))
# Each system: (char overrides on top of ICAO, word-level rewrites applied before the char map)
_SYSTEMS: dict[str, tuple[dict[str, str], list[tuple[str, str]]]] = {
    # Russian passports since 2013 (ICAO Doc 9303): Aleksandr, Iurii, Shcherbakov
    "icao": ({}, []),
    # Russian passports 1997-2010: Yuriy, Aleksandr
    "mvd1997": ({"й": "y", "ъ": "", "ю": "yu", "я": "ya"}, []),
    # BGN/PCGN, common in English texts: Yevgeniy, Fyodor
    "bgn": ({"й": "y", "ъ": "", "ё": "yo", "ю": "yu", "я": "ya"}, [(r"^е", "ye"), (r"(?<=[аеёиоуыэюяьъ])е", "ye")]),
    # GOST 7.79-2000 system B without its apostrophes: Xaritonov, Czvetkov
    "gost": ({"й": "j", "ё": "yo", "х": "x", "ц": "cz", "щ": "shh", "ъ": "", "ы": "y", "ю": "yu", "я": "ya"}, []),
    # what people type: Alexandr, Dmitry, Yuri, Ivanoff, Scherbakov
    "informal": ({"х": "h", "й": "y", "ё": "yo", "ц": "c", "щ": "sch", "ъ": "", "ю": "yu", "я": "ya"},
                 [(r"кс", "x"), (r"ий$", "y"), (r"ья", "ya"), (r"ов$", "off"), (r"ев$", "eff")]),
    "informal2": ({"х": "h", "й": "y", "ё": "e", "ц": "ts", "щ": "sh", "ъ": "", "ю": "yu", "я": "ya"},
                  [(r"ий$", "iy"), (r"ья", "ia")]),
    # German: Iwanow, Jurij, Schtscherbakow
    "german": ({"в": "w", "ж": "sch", "з": "s", "й": "j", "х": "ch", "ц": "z", "ч": "tsch", "ш": "sch",
                "щ": "schtsch", "ъ": "", "ю": "ju", "я": "ja", "ё": "jo"},
               [(r"кс", "x"), (r"ий$", "i"), (r"^е", "je")]),
    # French: Ivanoff, Tchaikovski, Iouri
    "french": ({"ж": "j", "у": "ou", "ч": "tch", "ш": "ch", "щ": "chtch", "й": "i", "ю": "iou", "я": "ia",
                "ё": "io", "ъ": ""}, [(r"ов$", "off"), (r"ий$", "i")]),
}
TRANSLIT_SYSTEMS = tuple(_SYSTEMS)
_SYSTEM_P = [25, 15, 12, 4, 25, 10, 5, 4]
_SYSTEM_MAPS = {name: ({**_ICAO, **over}, [(re.compile(p), s) for p, s in rules])
                for name, (over, rules) in _SYSTEMS.items()}
_HAS_CYR = re.compile("[а-яёА-ЯЁ]")


@lru_cache(maxsize=1 << 16)  # names repeat a lot
def translit(text: str, system: str = "icao") -> str:
    """Cyrillic to Latin in one of TRANSLIT_SYSTEMS; case is kept per word (ИВАНОВ -> IVANOV)."""
    chars, rules = _SYSTEM_MAPS[system]

    def word(m: re.Match) -> str:
        w = m.group(0)
        low = w.lower()
        for pattern, repl in rules:
            low = pattern.sub(repl, low)
        out = "".join(chars.get(c, c) for c in low)
        if w.isupper() and len(w) > 1:
            return out.upper()
        return out[:1].upper() + out[1:] if w[:1].isupper() else out

    return re.sub(r"[а-яёА-ЯЁ]+", word, text)


_LAT2CYR = [("shch", "щ"), ("sch", "ш"), ("tch", "ч"), ("sh", "ш"), ("ch", "ч"), ("zh", "ж"), ("kh", "х"),
            ("ts", "ц"), ("th", "т"), ("ph", "ф"), ("ck", "к"), ("ee", "и"), ("oo", "у"), ("ou", "ау"),
            ("yu", "ю"), ("ya", "я"), ("yo", "ё"), ("qu", "кв"), ("ey", "ей"), ("ay", "ей")]
_LAT2CYR_RE = re.compile("|".join(k for k, _ in _LAT2CYR) + "|[a-z]")
_LAT2CYR_MAP = {**dict(_LAT2CYR), **dict(zip("abcdefghijklmnopqrstuvwxyz",
                                              ["а", "б", "к", "д", "е", "ф", "г", "х", "и", "дж", "к", "л", "м",
                                               "н", "о", "п", "к", "р", "с", "т", "у", "в", "у", "кс", "и", "з"]))}


def to_cyrillic(text: str) -> str:
    """English words in Cyrillic as a Russian manager would type them: the usual spelling when known."""
    known = _vocab().cyrillic

    def word(m: re.Match) -> str:
        w = m.group(0)
        if w in known:
            return known[w]
        out = _LAT2CYR_RE.sub(lambda x: _LAT2CYR_MAP[x.group(0)], w.lower())
        if w.isupper() and len(w) > 1:
            return out.upper()
        return out[:1].upper() + out[1:] if w[:1].isupper() else out

    return re.sub(r"[A-Za-z][A-Za-z.']*[A-Za-z.]|[A-Za-z]", word, text)


@lru_cache(maxsize=4096)
def _latin(name: str) -> str:
    """The Latin form people use in e-mail addresses: lower case, letters only."""
    if not name:
        return ""
    s = translit(name, "informal2") if _HAS_CYR.search(name) else name
    return re.sub(r"[^a-z]", "", s.lower())


# =============================================================================================
# Tax ids (INN) with valid check digits

_W10 = np.array([2, 4, 10, 3, 5, 9, 4, 6, 8])
_W11 = np.array([7, 2, 4, 10, 3, 5, 9, 4, 6, 8])
_W12 = np.array([3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8])
_REGIONS = np.array([77, 78, 50, 54, 66, 16, 52, 74, 63, 55, 61, 2, 24, 36, 59, 34, 23, 64, 72, 18, 22, 38, 27,
                     25, 76, 39, 70])


def _inn(rng: np.random.Generator, n: int, digits: int) -> np.ndarray:
    """Random INNs of 10 (organisation) or 12 (person) digits with valid check digits."""
    if n == 0:
        return np.array([], dtype=object)
    d = rng.integers(0, 10, size=(n, digits))
    region = rng.choice(_REGIONS, size=n)
    d[:, 0], d[:, 1] = region // 10, region % 10
    if digits == 10:
        d[:, 9] = (d[:, :9] @ _W10) % 11 % 10
    else:
        d[:, 10] = (d[:, :10] @ _W11) % 11 % 10
        d[:, 11] = (d[:, :11] @ _W12) % 11 % 10
    value = d @ (10 ** np.arange(digits - 1, -1, -1, dtype=np.int64))
    return np.char.zfill(value.astype(str), digits).astype(object)


def inn_is_valid(inn: str) -> bool:
    """True for a 10- or 12-digit INN whose check digits are right."""
    if not inn or not (inn.isascii() and inn.isdigit()) or len(inn) not in (10, 12):
        return False
    d = np.array([int(c) for c in inn])
    if len(inn) == 10:
        return int(d[:9] @ _W10 % 11 % 10) == d[9]
    return int(d[:10] @ _W11 % 11 % 10) == d[10] and int(d[:11] @ _W12 % 11 % 10) == d[11]


# =============================================================================================
# Phones: numbers are (country code, national number, area code length); the raw value is a format of it


# Formats use the fields a (area code), s (subscriber number) and its groups g0, g1, g2 (Russian
# numbers in 3-2-2 / 2-2-2 / 1-2-2, others in two groups, g2 empty).
_RU_FORMATS = ["+7 ({a}) {g0}-{g1}-{g2}", "8 ({a}) {g0}-{g1}-{g2}", "8 {a} {s}", "8{a}{s}", "+7{a}{s}",
               "7-{a}-{g0}-{g1}-{g2}", "+7 {a} {g0} {g1} {g2}", "({a}) {g0}-{g1}-{g2}", "8-{a}-{s}",
               "+7({a}){g0}-{g1}-{g2}", "7{a}{s}", "+7 {a} {s}", "8({a}){g0}{g1}{g2}"]
_RU_FORMAT_P = _p([30, 14, 8, 8, 8, 3, 7, 4, 3, 5, 3, 4, 3])
_US_FORMATS = ["+1 ({a}) {g0}-{g1}", "+1 {a} {g0} {g1}", "1-{a}-{g0}-{g1}", "({a}) {g0}-{g1}", "{a}.{g0}.{g1}",
               "+1{a}{s}", "001 {a} {g0} {g1}", "8-10-1-{a}-{g0}-{g1}", "{a}-{g0}-{g1}"]
_US_FORMAT_P = _p([30, 15, 8, 15, 5, 10, 5, 5, 7])
_UK_FORMATS = ["+44 {a} {g0} {g1}", "+44 (0){a} {g0} {g1}", "0{a} {g0} {g1}", "+44{a}{s}", "0044 {a} {s}",
               "8 10 44 {a} {s}", "+44-{a}-{g0}-{g1}"]
_UK_FORMAT_P = _p([30, 15, 20, 12, 8, 7, 8])
_FORMATS = {7: (_RU_FORMATS, _RU_FORMAT_P), 1: (_US_FORMATS, _US_FORMAT_P), 44: (_UK_FORMATS, _UK_FORMAT_P)}
_FORMAT_PARTS = {cc: [list(string.Formatter().parse(f)) for f in formats] for cc, (formats, _w) in _FORMATS.items()}
_RU_EXT = [" доб. {}", " доб.{}", " (доб. {})", ", доб {}", " д. {}", " ext. {}", " #{}"]
_EN_EXT = [" ext. {}", " x{}", " ext {}", " #{}"]


def _ext_text(cc: int, ext: str, style: int) -> str:
    exts = _RU_EXT if cc == 7 else _EN_EXT
    return exts[style % len(exts)].format(ext)


@dataclass(frozen=True)
class Phone:
    cc: int           # country calling code: 7, 1 or 44
    nsn: str          # national significant number, 10 digits
    alen: int         # length of the area (or mobile operator) code
    style: int        # index into the country's formats
    ext: str | None = None
    ext_style: int = 0

    def render(self) -> str:
        a, s = self.nsn[: self.alen], self.nsn[self.alen:]
        n = len(s)
        if self.cc == 7:
            g = (s[: n - 4], s[n - 4: n - 2], s[n - 2:])
        else:
            cut = 3 if n == 6 else n - 4
            g = (s[:cut], s[cut:], "")
        text = _FORMATS[self.cc][0][self.style].format(a=a, s=s, g0=g[0], g1=g[1], g2=g[2])
        return text + _ext_text(self.cc, self.ext, self.ext_style) if self.ext else text


def _render_phones(cc: np.ndarray, nsn: np.ndarray, alen: np.ndarray, style: np.ndarray, ext: np.ndarray,
                   ext_style: np.ndarray) -> np.ndarray:
    """Phone.render for whole arrays at once (numpy string ufuncs, one pass per format)."""
    nsn = np.asarray(nsn).astype("U10")
    n_sub = 10 - alen
    a, s = np.strings.slice(nsn, 0, alen), np.strings.slice(nsn, alen, None)
    ru = cc == 7
    cut = np.where(ru | (n_sub != 6), n_sub - 4, 3)
    parts = {"a": a, "s": s, "g0": np.strings.slice(s, 0, cut),
             "g1": np.where(ru, np.strings.slice(s, cut, n_sub - 2), np.strings.slice(s, cut, None)),
             "g2": np.where(ru, np.strings.slice(s, n_sub - 2, None), "")}
    out = np.empty(len(nsn), dtype=object)
    for code, formats in _FORMAT_PARTS.items():
        for st, tokens in enumerate(formats):
            rows = np.flatnonzero((cc == code) & (style == st))
            if not len(rows):
                continue
            text = np.full(len(rows), "")
            for literal, fld, _spec, _conv in tokens:
                if literal:
                    text = np.strings.add(text, literal)
                if fld:
                    text = np.strings.add(text, parts[fld][rows])
            out[rows] = text.astype(object)
    for i in np.flatnonzero(ext != None):  # noqa: E711 - elementwise on an object array
        out[i] += _ext_text(int(cc[i]), ext[i], int(ext_style[i]))
    return out


def _py_new_phone(r: random.Random, cc: int, kind: str) -> Phone:
    """One new random number (for a phone a duplicate adds)."""
    if cc == 7:
        nsn, alen = (f"9{r.randrange(10**9):09d}", 3) if kind == "mobile" else (
            f"{r.choice(['495', '499', '812'])}{r.randrange(2 * 10**6, 10**7)}", 3)
    elif cc == 1:
        nsn, alen = f"{r.choice(['212', '415', '312', '617'])}{r.randrange(200, 1000)}{r.randrange(10**4):04d}", 3
    else:
        nsn, alen = (f"7{r.randrange(4, 10)}{r.randrange(10**8):08d}", 4) if kind == "mobile" else (
            f"20{r.choice('378')}{r.randrange(10**7):07d}", 2)
    return Phone(cc, nsn, alen, _weighted_index(r, _FORMATS[cc][1]))


_CUMULATIVE: dict[int, tuple[np.ndarray, list[float]]] = {}  # id -> (the array, kept alive; its cumsum)


def _weighted_index(r: random.Random, p: np.ndarray) -> int:
    """An index drawn with probabilities p, for the module's fixed weight arrays (r.choices would
    convert the numpy weights on every call, which is slow)."""
    entry = _CUMULATIVE.get(id(p))
    if entry is None or entry[0] is not p:
        entry = _CUMULATIVE[id(p)] = (p, np.cumsum(p).tolist())
    cum = entry[1]
    return min(bisect.bisect_right(cum, r.random() * cum[-1]), len(cum) - 1)


def _new_numbers(rng: np.random.Generator, cc: np.ndarray, mobile: np.ndarray, area: np.ndarray,
                 alen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised random national numbers. ``area``/``alen``: the landline area code per row (as int)."""
    n = len(cc)
    nsn = np.zeros(n, dtype=np.int64)
    out_alen = alen.copy()
    ru_mob = (cc == 7) & mobile
    nsn[ru_mob] = 9_000_000_000 + rng.integers(0, 10**9, ru_mob.sum())
    out_alen[ru_mob] = 3
    land = ~mobile | (cc == 1)
    for length in np.unique(alen[land]):
        rows = land & (alen == length)
        sub = 10 - length
        nsn[rows] = area[rows] * 10**sub + rng.integers(2 * 10 ** (sub - 1), 10**sub, rows.sum())
    uk_mob = (cc == 44) & mobile
    nsn[uk_mob] = 7_000_000_000 + rng.integers(4 * 10**8, 10**9, uk_mob.sum())
    out_alen[uk_mob] = 4
    return nsn, out_alen


# =============================================================================================
# E-mails

_LOCAL_PATTERNS = [
    lambda f, l, n: l, lambda f, l, n: f"{f}.{l}", lambda f, l, n: f"{f[:1]}.{l}", lambda f, l, n: f"{f}{l}",
    lambda f, l, n: f"{l}.{f}", lambda f, l, n: f"{f}_{l}", lambda f, l, n: f"{l}{n % 100:02d}",
    lambda f, l, n: f"{f[:1]}{l}{n % 100}", lambda f, l, n: f"{l}_{f[:1]}", lambda f, l, n: f"{f}{n % 1000}",
    lambda f, l, n: f"{f}.{l}{n % 100}", lambda f, l, n: f"{l}{n}",
]
_LOCAL_P = _p([10, 14, 8, 8, 4, 4, 10, 8, 4, 6, 8, 6])
_WORK_PATTERNS = [1, 2, 0, 8]
_WORK_P = _p([45, 25, 20, 10])


def _local(pattern: int, first: str, last: str, num: int) -> str:
    f, l = _latin(first), _latin(last)
    if not l:
        l, f = (f, "") if f else (f"client{num}", "")
    if not f and pattern in (1, 2, 3, 4, 5, 8, 10):
        pattern = 6
    return _LOCAL_PATTERNS[pattern](f, l, num)


def _personal_email(r: random.Random, first: str, last: str, ru: bool) -> str:
    domains = _PUBLIC_RU if ru else _PUBLIC_EN
    domain = r.choices(list(domains), weights=list(domains.values()))[0]
    return f"{_local(_weighted_index(r, _LOCAL_P), first, last, r.randrange(1960, 10_000))}@{domain}"


# =============================================================================================
# Records inside the generator, and the noise applied to duplicates


@dataclass(slots=True)
class Comm:
    type: str            # phone, email, web
    kind: str            # work, mobile, home, other
    value: str           # as entered
    phone: Phone | None = None
    slot: int | None = None  # position among the record's values (None: appended)

    def copy(self) -> Comm:
        return Comm(self.type, self.kind, self.value, self.phone, self.slot)


# Phones of many communication rows as parallel arrays (cc 0: not a phone, or junk; nsn as a number)
_PHONE_KEYS = ("cc", "nsn", "alen", "style", "ext", "ext_style")


def _empty_parts(n: int) -> dict[str, np.ndarray]:
    return {"cc": np.zeros(n, dtype=np.int64), "nsn": np.zeros(n, dtype=np.int64),
            "alen": np.zeros(n, dtype=np.int64), "style": np.zeros(n, dtype=np.int64),
            "ext": np.full(n, None, dtype=object), "ext_style": np.zeros(n, dtype=np.int64)}


def _concat_parts(a: dict, b: dict) -> dict[str, np.ndarray]:
    return {k: np.concatenate([np.asarray(a[k], dtype=b[k].dtype), b[k]]) for k in _PHONE_KEYS}


def _phone_parts(phones: list[Phone | None]) -> dict[str, np.ndarray]:
    out = _empty_parts(len(phones))
    for k in _PHONE_KEYS:
        out[k][:] = [(int(ph.nsn) if k == "nsn" else getattr(ph, k)) if ph is not None else out[k][0]
                     for ph in phones]
    return out


def _phone_at(parts: dict, i: int) -> Phone | None:
    if not parts["cc"][i]:
        return None
    return Phone(int(parts["cc"][i]), str(parts["nsn"][i]), int(parts["alen"][i]), int(parts["style"][i]),
                 parts["ext"][i], int(parts["ext_style"][i]))


def _phones(comms: list[Comm]) -> list[Comm]:
    return [c for c in comms if c.type == "phone" and c.phone is not None]


def _emails(comms: list[Comm]) -> list[Comm]:
    return [c for c in comms if c.type == "email" and "@" in c.value]


def typo(word: str, r: random.Random) -> str:
    """One insertion, deletion, substitution or transposition, never at the first letter."""
    if len(word) < 3:
        return word
    letters = _CYR if _HAS_CYR.search(word) else "abcdefghijklmnopqrstuvwxyz"
    i = r.randrange(1, len(word) - 1)
    op = r.randrange(4)
    if op == 0:
        return word[:i] + r.choice(letters) + word[i:]
    if op == 1:
        return word[:i] + word[i + 1:]
    if op == 2 or word[i] == word[i + 1]:
        options = [c for c in letters if c != word[i].lower()]
        return word[:i] + r.choice(options) + word[i + 1:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _case_spaces(text: str, r: random.Random) -> str:
    op = r.randrange(5)
    if op == 0:
        return text.upper()
    if op == 1:
        return text.lower()
    if op == 2:
        return f" {text}  "
    if op == 3:
        return text.replace(" ", "  ") + " " if " " in text else text + "  "
    return "\t" + text.lower()


# --- persons (contacts and lead persons) ---------------------------------------------------------------
# A person record is a dict: last, first, middle, ru, male, and the optional fields birthdate, post,
# address, tax_id, comments. Each noise is (weight, applies(rec, facts), apply(rec, comms, r)), where
# facts counts the record's communications (_CommFacts) and apply changes rec and comms in place.

_NAME_FIELDS = ("last", "first", "middle")
_OPTIONAL = ("birthdate", "post", "address", "tax_id", "comments")


def _has_name(p: dict, facts=None) -> bool:
    return bool(p["last"] or p["first"])


def _p_typo(p, comms, r):
    fields = [f for f in ("last", "first") if p[f] and len(p[f]) >= 3]
    f = r.choice(fields)
    p[f] = typo(p[f], r)


def _p_translit(p, comms, r):
    if any(p[f] and _HAS_CYR.search(p[f]) for f in _NAME_FIELDS):
        system = r.choices(TRANSLIT_SYSTEMS, weights=_SYSTEM_P)[0]
        for f in _NAME_FIELDS:
            if p[f]:
                p[f] = translit(p[f], system)
        if r.random() < 0.5:
            p["middle"] = None  # a patronymic is rarely typed in Latin
    else:
        for f in _NAME_FIELDS:
            if p[f]:
                p[f] = to_cyrillic(p[f])


def _p_swap(p, comms, r):
    p["last"], p["first"] = p["first"], p["last"]


def _p_fullname(p, comms, r):
    parts = [p["last"], p["first"], p["middle"]]
    order = r.choice([(0, 1, 2), (1, 2, 0), (1, 0, 2), (1, 0)])
    text = " ".join(parts[i] for i in order if parts[i])
    target = "last" if r.random() < 0.6 else "first"
    p["last"] = p["first"] = p["middle"] = None
    p[target] = text


def _p_nickname(p, comms, r):
    p["first"] = r.choice(_vocab().nicknames[p["first"]])


def _p_patr_drop(p, comms, r):
    p["middle"] = None


def _p_patr_add(p, comms, r):
    v = _vocab()
    names = v.patr_m if p["male"] else v.patr_f
    p["middle"] = names.name_e[_weighted_index(r, names.p)]


def _p_case(p, comms, r):
    for f in _NAME_FIELDS:
        if p[f] and (r.random() < 0.6 or f == "last"):
            p[f] = _case_spaces(p[f], r)


def _has_yo(p, facts=None):
    yo = _vocab().yo
    return any(p[f] and ("ё" in p[f] or any(w in yo for w in p[f].split())) for f in _NAME_FIELDS)


def _p_yo(p, comms, r):
    yo = _vocab().yo
    for f in _NAME_FIELDS:
        if p[f]:
            p[f] = p[f].replace("ё", "е") if "ё" in p[f] else " ".join(yo.get(w, w) for w in p[f].split(" "))


def _p_sparse(p, comms, r):
    present = [f for f in _OPTIONAL if p.get(f)]
    for f in r.sample(present, r.randint(1, len(present))):
        p[f] = None


PERSON_NOISE = {
    "typo": (12, lambda p, c: any(p[f] and len(p[f]) >= 3 for f in ("last", "first")), _p_typo),
    "translit": (11, _has_name, _p_translit),
    "swap_names": (5, lambda p, c: bool(p["last"] and p["first"]), _p_swap),
    "fullname_one_field": (4, lambda p, c: bool(p["last"] and p["first"]), _p_fullname),
    "nickname": (9, lambda p, c: p["first"] in _vocab().nicknames, _p_nickname),
    "patronymic_dropped": (8, lambda p, c: bool(p["middle"]), _p_patr_drop),
    "patronymic_added": (8, lambda p, c: p["ru"] and not p["middle"] and bool(p["first"]), _p_patr_add),
    "case_spaces": (6, _has_name, _p_case),
    "yo_e": (6, _has_yo, _p_yo),
    "sparse": (5, lambda p, c: any(p.get(f) for f in _OPTIONAL), _p_sparse),
}

# --- communications --------------------------------------------------------------------------


def _c_phone_format(p, comms, r):
    phones = _phones(comms)
    surely = r.choice(phones)  # at least one changes
    for c in phones:
        if c is surely or r.random() < 0.7:
            weights = _FORMATS[c.phone.cc][1]
            style = c.phone.style
            while style == c.phone.style:
                style = _weighted_index(r, weights)
            c.phone = Phone(c.phone.cc, c.phone.nsn, c.phone.alen, style, c.phone.ext, c.phone.ext_style)
            c.value = c.phone.render()


def _c_phone_ext(p, comms, r):
    c = r.choice(_phones(comms))
    ph = c.phone
    ext = None if ph.ext else str(r.randrange(10, 1000) if r.random() < 0.8 else r.randrange(1000, 10000))
    c.phone = Phone(ph.cc, ph.nsn, ph.alen, ph.style, ext, r.randrange(7))
    c.value = c.phone.render()


def _c_phone_dropped(p, comms, r):
    comms.remove(r.choice([c for c in comms if c.type == "phone"]))


def _c_phone_added(p, comms, r):
    phones = _phones(comms)
    cc = phones[0].phone.cc if phones else (7 if p.get("ru", True) else 1)
    kind = "mobile" if r.random() < 0.7 else "work"
    ph = _py_new_phone(r, cc, kind)
    comms.append(Comm("phone", kind, ph.render(), ph))


def _c_email_case(p, comms, r):
    c = r.choice([e for e in _emails(comms) if e.value != e.value.upper()])
    local, _, domain = c.value.partition("@")
    op = r.randrange(3)
    if op == 0:
        c.value = c.value.upper()
    elif op == 1:
        c.value = f"{local[:1].upper()}{local[1:]}@{domain[:1].upper()}{domain[1:]}"
    else:
        c.value = f"{local.title()}@{domain.upper()}"


def _gmail(c: Comm) -> bool:
    return c.value.lower().endswith(("@gmail.com", "@googlemail.com"))


def _c_gmail_dots(p, comms, r):
    c = r.choice([c for c in _emails(comms) if _gmail(c)])
    old_local, _, domain = c.value.partition("@")
    plain = old_local.replace(".", "")
    local = plain if "." in old_local and r.random() < 0.5 else old_local
    for _ in range(5):  # dots somewhere else (Gmail ignores them)
        if local != old_local or len(plain) < 3:
            break
        cuts = sorted(r.sample(range(1, len(plain)), min(r.randint(1, 2), len(plain) - 1)))
        local = ".".join(plain[i:j] for i, j in zip([0] + cuts, cuts + [len(plain)]))
    if local == old_local or r.random() < 0.2:
        domain = "googlemail.com" if domain.lower() == "gmail.com" else "gmail.com"
    c.value = f"{local}@{domain}"


def _c_plus_tag(p, comms, r):
    c = r.choice(_emails(comms))
    local, _, domain = c.value.partition("@")
    c.value = f"{local}+{r.choice(['crm', 'news', 'work', 'shop', '2019', 'b24', 'promo'])}@{domain}"


def _c_email_dropped(p, comms, r):
    comms.remove(r.choice([c for c in comms if c.type == "email"]))


def _c_email_added(p, comms, r):
    first, last = p.get("_first0") or "", p.get("_last0") or ""
    if p.get("kind") == "company":  # another mailbox of its domain, or a public one
        domain = p.get("domain")
        taken = {c.value.lower() for c in comms}
        local = r.choice([x for x in ("sales", "office", "zakaz", "buh", "director", "manager")
                          if f"{x}@{domain}" not in taken])
        value = f"{local}@{domain}" if domain else f"{local}{r.randrange(100, 10_000)}@{r.choice(list(_PUBLIC_RU))}"
    else:
        value = _personal_email(r, first, last, p.get("ru", True))
        local, _, domain = value.partition("@")
        value = f"{local}{r.randrange(10, 100)}@{domain}"  # fresh: rarely someone else's
    comms.append(Comm("email", r.choice(["work", "home", "other"]), value))


@dataclass
class _CommFacts:
    """What the communication noises need to know, counted once per step."""
    phones: int = 0        # phone rows, junk included
    parsed: int = 0        # phones with a known number
    emails: int = 0        # e-mail rows, junk included
    addresses: int = 0     # e-mails with an @
    lower: bool = False    # an address with lower-case letters
    gmail: bool = False


def _comm_facts(comms: list[Comm]) -> _CommFacts:
    f = _CommFacts()
    for c in comms:
        if c.type == "phone":
            f.phones += 1
            f.parsed += c.phone is not None
        elif c.type == "email":
            f.emails += 1
            if "@" in c.value:
                f.addresses += 1
                f.lower = f.lower or c.value != c.value.upper()
                f.gmail = f.gmail or _gmail(c)
    return f


# applies(rec, facts): the facts are about the communications
COMM_NOISE = {
    "phone_format": (18, lambda p, f: f.parsed > 0, _c_phone_format),
    "phone_ext": (4, lambda p, f: f.parsed > 0, _c_phone_ext),
    "phone_dropped": (5, lambda p, f: f.phones >= 2 or (f.phones == 1 and f.emails >= 1), _c_phone_dropped),
    "phone_added": (5, lambda p, f: True, _c_phone_added),
    "email_case": (6, lambda p, f: f.lower, _c_email_case),
    "gmail_dots": (6, lambda p, f: f.gmail, _c_gmail_dots),
    "plus_tag": (3, lambda p, f: f.addresses > 0, _c_plus_tag),
    "email_dropped": (4, lambda p, f: f.emails >= 2 or (f.emails == 1 and f.phones >= 1), _c_email_dropped),
    "email_added": (4, lambda p, f: True, _c_email_added),
}

# --- companies ----------------------------------------------------------------------------------
# A company record is a dict: name, lang ('ru'/'en'), form (code or None), form_style, quote, order,
# script ('native' or a translit system / 'cyrillic'), case (None or a function tag), tax_id, website,
# domain; render_title() turns it into the title as entered.


def render_title(c: dict) -> str:
    name, form, lang = c["name"], c["form"], c["lang"]
    latin = lang == "ru" and c["script"] != "native"
    cyr = lang == "en" and c["script"] != "native"
    if latin:
        name = translit(name, c["script"])
    elif cyr:
        name = to_cyrillic(name)
    form_text = ""
    if form:
        if lang == "ru":
            short, long_, lat, eng = _RU_FORMS[form]
            form_text = {"short": short, "long": long_, "latin": lat, "english": eng}[c["form_style"]]
            if latin and c["form_style"] in ("short", "long"):
                form_text = eng
            if not latin and c["form_style"] == "english":  # "LLC" after a Cyrillic name: keep ООО
                form_text = short
        else:
            short, long_, cyr_form = _EN_FORMS[form]
            form_text = cyr_form if cyr else (long_ if c["form_style"] == "long" else short)
    q0, q1 = _QUOTES[c["quote"]]
    quoted = f"{q0}{name}{q1}"
    if not form_text:
        title = quoted
    elif c["order"] == "pre":
        title = f"{form_text} {quoted}"
    elif c["order"] == "comma":
        title = f"{quoted}, {form_text}"
    else:
        title = f"{quoted} {form_text}"
    return c["finish"](title) if c.get("finish") else title


def _k_form_changed(c, comms, r):
    if c["lang"] == "ru":
        options = [s for s in ("short", "long", "latin") if s != c["form_style"]]
        c["form_style"] = r.choice(options)
        if c["form_style"] == "latin":
            c["order"] = r.choice(["pre", "post"])
    else:
        c["form_style"] = "long" if c["form_style"] != "long" else "short"
    if r.random() < 0.3:
        c["order"] = r.choice([o for o in ("pre", "post", "comma") if o != c["order"]])


def _k_form_dropped(c, comms, r):
    c["form"] = None


def _k_form_added(c, comms, r):
    c["form"] = "ООО" if c["lang"] == "ru" else r.choice(["LLC", "Inc.", "Ltd"])
    c["form_style"], c["order"] = "short", "pre" if c["lang"] == "ru" else "post"


def _k_quotes(c, comms, r):
    c["quote"] = r.choice([q for q in _QUOTES if q != c["quote"]])


def _k_translit(c, comms, r):
    if c["lang"] == "ru":
        c["script"] = r.choices(["informal", "informal2", "icao", "bgn", "mvd1997"], weights=[35, 25, 20, 10, 10])[0]
        c["form_style"] = r.choice(["english", "english", "latin"])
        c["order"] = "post" if c["form_style"] == "english" else r.choice(["pre", "post"])
        c["quote"] = r.choice(["none", "none", "straight"])
    else:
        c["script"] = "cyrillic"
        if c["form"] and r.random() < 0.4:  # the Russian branch: ООО «Акме»
            c["lang"], c["name"], c["form"], c["form_style"], c["order"], c["quote"], c["script"] = (
                "ru", to_cyrillic(c["name"]), "ООО", "short", "pre", "guillemets", "native")


def _k_typo(c, comms, r):
    words = c["name"].split(" ")
    i = max(range(len(words)), key=lambda j: len(words[j]))
    words[i] = typo(words[i], r)
    c["name"] = " ".join(words)


def _k_case(c, comms, r):
    op = r.randrange(4)
    c["finish"] = [str.upper, str.lower, lambda t: f" {t} ", lambda t: t.replace(" ", "  ")][op]


def _k_tax_dropped(c, comms, r):
    c["tax_id"] = None


def _website_variant(domain: str, r: random.Random) -> str:
    return r.choice([domain, f"www.{domain}", f"http://{domain}", f"https://www.{domain}/", f"http://www.{domain}",
                     f"https://{domain}", f"www.{domain.upper()}"])


def _k_website(c, comms, r):
    old = c["website"]
    while c["website"] == old:
        c["website"] = _website_variant(c["domain"], r)
    for w in comms:
        if w.type == "web":
            w.value = c["website"]


def _k_sparse(c, comms, r):
    present = [f for f in ("address", "industry", "comments") if c.get(f)]
    for f in r.sample(present, r.randint(1, len(present))):
        c[f] = None


COMPANY_NOISE = {
    "legal_form_changed": (9, lambda c, k: bool(c["form"]), _k_form_changed),
    "legal_form_dropped": (7, lambda c, k: bool(c["form"]), _k_form_dropped),
    "legal_form_added": (3, lambda c, k: not c["form"], _k_form_added),
    "quotes": (7, lambda c, k: c["lang"] == "ru" and c["form"] != "ИП", _k_quotes),
    "title_translit": (8, lambda c, k: True, _k_translit),
    "typo": (8, lambda c, k: len(c["name"]) >= 4, _k_typo),
    "case_spaces": (5, lambda c, k: True, _k_case),
    "tax_id_dropped": (3, lambda c, k: bool(c.get("tax_id")), _k_tax_dropped),
    "website_format": (3, lambda c, k: bool(c.get("website")), _k_website),
    "sparse": (3, lambda c, k: any(c.get(f) for f in ("address", "industry", "comments")), _k_sparse),
}
_CONFLICTS = [{"swap_names", "fullname_one_field"}, {"patronymic_dropped", "patronymic_added"},
              {"legal_form_changed", "legal_form_dropped", "legal_form_added"}, {"translit", "yo_e"},
              {"title_translit", "quotes"}]
_N_NOISES = ([1, 2, 3], [45, 35, 20])


def _apply_noise(rec: dict, comms: list[Comm], registry: dict, r: random.Random, k: int,
                 chosen: list[str] | None = None) -> list[str]:
    """Apply up to ``k`` different applicable noise kinds, never two that conflict; returns all names applied.

    The kinds are drawn (by weight) among those that apply to the record as it is; one that a
    previous kind made inapplicable (the only phone dropped, then phone_ext) is skipped.
    """
    chosen = chosen if chosen is not None else []
    facts = _comm_facts(comms)
    blocked = _blocked(chosen)
    names, weights = [], []
    for name, (w, applies, _fn) in registry.items():
        if name not in blocked and applies(rec, facts):
            names.append(name)
            weights.append(w)
    picked = []
    while len(picked) < k and names:
        name = r.choices(names, weights=weights)[0]
        picked.append(name)
        drop = _blocked([name])
        keep = [i for i, other in enumerate(names) if other not in drop]
        names, weights = [names[i] for i in keep], [weights[i] for i in keep]
    changed = False
    for name in picked:
        _w, applies, fn = registry[name]
        if changed and not applies(rec, _comm_facts(comms)):
            continue
        fn(rec, comms, r)
        chosen.append(name)
        changed = True
    return chosen


def _blocked(names: list[str]) -> set[str]:
    out = set(names)
    for group in _CONFLICTS:
        if out & group:
            out |= group
    return out


# =============================================================================================
# Employers: the companies contacts work for (office phone, domain, info@ address)


@dataclass
class _CompanyBasics:
    """Vectorised core of original companies, shared by the demo companies and the benchmark contacts."""
    ru: np.ndarray
    name: np.ndarray        # without legal form or quotes
    form: np.ndarray        # legal form code or None
    city: np.ndarray
    domain: np.ndarray      # or None (sole proprietors)
    general_email: np.ndarray
    phone_cc: np.ndarray
    phone_nsn: np.ndarray   # national number, as int
    phone_alen: np.ndarray
    similar: np.ndarray     # bool: named like another company (hard negative)
    ids: np.ndarray | None = None  # company ids once known

    def __len__(self) -> int:
        return len(self.ru)


def _company_basics(k: int, rng: np.random.Generator) -> _CompanyBasics:
    v = _vocab()
    ru = rng.random(k) < RU_SHARE
    forms_ru = list(_RU_FORM_P)
    forms_en = list(_EN_FORM_P)
    form = np.where(ru, np.array(forms_ru, dtype=object)[rng.choice(len(forms_ru), k, p=_p(list(_RU_FORM_P.values())))],
                    np.array(forms_en, dtype=object)[rng.choice(len(forms_en), k, p=_p(list(_EN_FORM_P.values())))])
    pattern = rng.choice(5, k, p=[0.15, 0.45, 0.25, 0.10, 0.05])
    a = rng.integers(0, 1000, k)
    b = rng.integers(0, 1000, k)
    c = rng.integers(0, 1000, k)

    def pick(words, rows, idx):  # object arrays: + on them concatenates strings element by element
        return np.array(words, dtype=object)[idx[rows] % len(words)]

    is_ip = form == "ИП"
    name = np.empty(k, dtype=object)
    for p_ in range(5):  # each pattern only for its own rows
        rows = (pattern == p_) & ru & ~is_ip
        root = pick(_RU_COMPANY_ROOTS, rows, a)
        if p_ == 0:
            name[rows] = root
        elif p_ == 1:
            name[rows] = pick(_RU_STEMS_A, rows, b) + np.where(
                c[rows] % 3 > 0, pick(_RU_STEMS_B, rows, c), pick([w.capitalize() for w in _RU_STEMS_B], rows, c))
        elif p_ == 2:
            name[rows] = root + "-" + pick([w.capitalize() for w in _RU_STEMS_B], rows, c)
        elif p_ == 3:
            name[rows] = pick(_RU_NAME_PREFIX, rows, c) + " " + root
        else:
            name[rows] = pick(v.last_ru_m.name_e, rows, b) + " и партнёры"
        rows = (pattern == p_) & ~ru
        root = pick(v.en_roots, rows, a)
        if p_ == 0:
            name[rows] = root
        elif p_ == 4:
            name[rows] = pick(v.last_en.name, rows, c) + " & Partners"
        else:
            name[rows] = root + " " + pick(v.en_words, rows, b)
    # sole proprietors are named after themselves: Петров А.В. or Петров Андрей Викторович
    short = a % 2 > 0
    rows = is_ip & short
    name[rows] = (pick(v.last_ru_m.name_e, rows, a) + " " + pick([x[0] for x in v.first["ru_m"].name_e], rows, b) + "."
                  + pick([x[0] for x in v.patr_m.name_e], rows, c) + ".")
    rows = is_ip & ~short
    name[rows] = (pick(v.last_ru_m.name_e, rows, a) + " " + pick(v.first["ru_m"].name_e, rows, b) + " "
                  + pick(v.patr_m.name_e, rows, c))
    # Hard negatives: some companies are named like another one (Ромашка / Ромашка Плюс) but are not it
    similar = np.zeros(k, dtype=bool)
    if k >= 10:
        eligible = np.flatnonzero(form != "ИП")
        n_sib = int(len(eligible) * 0.05)
        pair = rng.choice(eligible, size=2 * n_sib, replace=False) if n_sib else np.array([], dtype=int)
        for sib, base in zip(pair[:n_sib].tolist(), pair[n_sib:].tolist()):
            variants = _SIMILAR_RU if ru[base] else _SIMILAR_EN
            name[sib] = name[base] + variants[(sib + base) % len(variants)]
            ru[sib] = ru[base]
            form[sib] = form[base] if (sib % 3) else ("ООО" if ru[base] else "LLC")
            similar[sib] = similar[base] = True
    # City and office phone
    ru_city = rng.choice(len(v.ru_cities), k, p=v.ru_city_p)
    en_city = rng.choice(len(v.en_cities), k, p=v.en_city_p)
    city = np.where(ru, v.ru_cities[ru_city], v.en_cities[en_city])
    cc = np.where(ru, 7, np.where(v.en_city_country[en_city] == "us", 1, 44)).astype(np.int64)
    area, alen = v.area_code(ru, ru_city, en_city, rng.integers(0, 2, k))
    nsn, alen = _new_numbers(rng, cc, np.zeros(k, dtype=bool), area, alen)
    # Domains: from the Latin name; collisions get the city or a number
    tld_ru = np.array(["ru", "ru", "ru", "ru", "ru", "ru", "com", "net", "su", "org"], dtype=object)
    tld_en = np.array(["com", "com", "com", "com", "io", "net", "org", "co.uk"], dtype=object)
    tld = np.where(ru, tld_ru[rng.integers(0, len(tld_ru), k)], tld_en[rng.integers(0, len(tld_en), k)])
    codes, uniques = pd.factorize(name)
    slug_of = np.array([re.sub(r"[^a-z0-9]+", "", _slug_base(u).lower()) or "company" for u in uniques], dtype=object)
    slugs = slug_of[codes] if k else np.array([], dtype=object)
    domain = slugs + "." + tld
    # a taken domain: the city, "-group", another zone, and only then a number
    city_slug = _per_unique(city, lambda x: _latin(x or "")[:3], object)
    variants = [slugs + "-" + city_slug + "." + tld, slugs + city_slug + "." + tld, slugs + "-group." + tld,
                slugs + ".net", slugs + "-pro." + tld, slugs + ".biz"]
    attempt = 0
    while (dup := pd.Series(domain).duplicated().to_numpy()).any():
        if attempt < len(variants):
            domain[dup] = variants[attempt][dup]
        else:
            number = rng.integers(2, 10_000, int(dup.sum())).astype(str).astype(object)
            domain[dup] = slugs[dup] + number + "." + tld[dup]
        attempt += 1
    domain[is_ip] = None
    gen_local = np.array(["info", "info", "info", "info", "office", "office", "sales", "mail", "hello", "contact"],
                         dtype=object)[rng.integers(0, 10, k)]
    general = np.full(k, None, dtype=object)
    general[~is_ip] = gen_local[~is_ip] + "@" + domain[~is_ip]
    return _CompanyBasics(ru, name, form, city, domain, general, cc, nsn, alen, similar)


def _slug_base(name: str) -> str:
    name = name.replace("&", "and").replace("+", "plus")
    return translit(name, "informal2") if _HAS_CYR.search(name) else name


# =============================================================================================
# People: contacts (and the persons of leads), vectorised originals, then noisy duplicates


class _Tags:
    """What makes each original hard or dirty, as bits; notes() spells them out ("original+family")."""
    NAMES = ("family", "father_son", "namesake", "colleague_switchboard", "colleague_info_email",
             "placeholder_phone", "placeholder_email", "invalid_email", "empty_name")

    def __init__(self, n: int) -> None:
        self.bits = np.zeros(n, dtype=np.int64)

    def add(self, rows, name: str) -> None:
        self.bits[rows] |= 1 << self.NAMES.index(name)

    def notes(self) -> np.ndarray:
        codes, uniques = pd.factorize(self.bits)
        text = np.array(["+".join(["original"] + [t for j, t in enumerate(self.NAMES) if u >> j & 1])
                         for u in uniques], dtype=object)
        return text[codes] if len(codes) else np.array([], dtype=object)


@dataclass
class People:
    """Generated persons in id order (ids 1..n)."""
    frame: pd.DataFrame   # contacts table columns
    comms: pd.DataFrame   # entity_id, type, kind, value
    truth: pd.DataFrame   # entity_id, cluster, note
    origin: np.ndarray    # id of the original each record was copied from (its own id for originals)
    ru: np.ndarray
    male: np.ndarray
    employer: np.ndarray  # index into the employers, -1 for none
    _phone_source: tuple  # (originals' phone parts, duplicates' Phone list, order of comms)

    @cached_property
    def comm_phone(self) -> dict:
        """The phone behind each row of comms, as parallel arrays (see _PHONE_KEYS); built when asked."""
        parts, dup_phones, order = self._phone_source
        return {k: v[order] for k, v in _concat_parts(parts, _phone_parts(dup_phones)).items()}


def _cluster_plan(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
    """For d duplicates, the original (0..m-1) each one copies: clusters of 2, sometimes 3 or 4."""
    if d == 0:
        return np.zeros(0, dtype=np.int64)
    extra = rng.choice([1, 2, 3], size=d, p=[0.82, 0.13, 0.05])
    cum = np.cumsum(extra)
    k = int(np.searchsorted(cum, d)) + 1
    extra = extra[:k]
    extra[-1] -= cum[k - 1] - d
    originals = rng.choice(m, size=k, replace=False)
    return np.repeat(originals, extra)


@dataclass
class _Originals:
    """The original persons being generated (index = generation order), filled in step by step."""
    ru: np.ndarray
    male: np.ndarray
    first: np.ndarray
    last: np.ndarray
    middle: np.ndarray
    birth: np.ndarray                 # datetime64[D], NaT when unknown
    tags: _Tags
    family_a: np.ndarray = None       # relatives: family_a[i] and family_b[i]
    family_b: np.ndarray = None
    father_son: np.ndarray = None     # (k, 2): father, son
    ru_city: np.ndarray = None
    en_city: np.ndarray = None
    employer: np.ndarray = None       # index into the employers, -1 for none
    comms: dict = None                # owner, type, kind, value, slot arrays, and phone parts

    def __len__(self) -> int:
        return len(self.ru)


def _make_people(n: int, share: float, rng: np.random.Generator, r: random.Random, managers: int,
                 employers: _CompanyBasics | None, entity: str = "contact") -> People:
    """n persons, ``share`` of them duplicates; originals are built column by column, duplicates one by one."""
    d = int(round(n * share))
    m = n - d
    o = _person_names(rng, m)
    _relatives(rng, o)
    _homes_and_employers(rng, o, employers)
    phones = _person_phones(rng, o, employers)
    emails = _person_emails(rng, o, employers)
    o.comms = {k: np.concatenate([phones[k], emails[k]]) for k in ("owner", "type", "kind", "value", "slot")}
    o.comms["phone"] = _concat_parts({k: phones[k] for k in _PHONE_KEYS}, _empty_parts(len(emails["owner"])))
    _junk(rng, o)
    v = _vocab()
    ru = o.ru
    post = np.full(m, None, dtype=object)
    has_post = rng.random(m) < 0.6
    post[has_post & ru] = np.array(_RU_POSTS, dtype=object)[rng.integers(0, len(_RU_POSTS), int((has_post & ru).sum()))]
    post[has_post & ~ru] = np.array(_EN_POSTS, dtype=object)[rng.integers(0, len(_EN_POSTS),
                                                                          int((has_post & ~ru).sum()))]
    city = np.where(ru, v.ru_cities[o.ru_city], v.en_cities[o.en_city])
    address = _addresses(rng, ru, city, rng.random(m) < 0.55)
    comments = np.full(m, None, dtype=object)
    has_comment = rng.random(m) < 0.1
    for mask, texts in ((has_comment & ru, _RU_COMMENTS), (has_comment & ~ru, _EN_COMMENTS)):
        comments[mask] = np.array(texts, dtype=object)[rng.integers(0, len(texts), int(mask.sum()))]
    tax_id = np.full(m, None, dtype=object)
    has_inn = ru & (rng.random(m) < 0.08)
    tax_id[has_inn] = _inn(rng, int(has_inn.sum()), 12)
    source = np.array(SOURCES, dtype=object)[rng.choice(len(SOURCES), m, p=_p(SOURCE_P))]
    responsible = rng.integers(2, managers + 2, m)
    created = START + rng.integers(0, int((END - START).astype(int)) - 90 * DAY, m).astype("timedelta64[s]")

    # Namesakes are found, not assumed: originals sharing last, first and middle name
    key = pd.DataFrame({f: _per_unique(col, lambda x: (x or "").replace("ё", "е"), object)
                        for f, col in (("l", o.last), ("f", o.first), ("m", o.middle))})
    o.tags.add(np.flatnonzero(key.duplicated(keep=False).to_numpy() & (key["l"] != "").to_numpy()), "namesake")

    # Duplicates, then everything ordered by creation time -> ids
    orig = _cluster_plan(rng, m, d)
    c = o.comms
    dup = _duplicate_people(orig, r, rng, dict(
        last=o.last, first=o.first, middle=o.middle, ru=ru, male=o.male, birthdate=o.birth, post=post,
        address=address, tax_id=tax_id, comments=comments), c["owner"], c["type"], c["kind"], c["value"],
        c["phone"], c["slot"])
    gap = rng.exponential(150 * DAY, d).astype(np.int64) + 3600
    all_created = np.concatenate([created, _dup_created(created[orig], rng.random(d) < 0.85, gap)])
    modified = all_created + np.minimum(rng.exponential(120 * DAY, n).astype(np.int64),
                                        (END - all_created).astype(np.int64)).astype("timedelta64[s]")
    order = np.lexsort((np.arange(n), all_created))
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.arange(1, n + 1)

    def cat(a, b):
        return np.concatenate([np.asarray(a, dtype=object), np.asarray(b, dtype=object)])[order]

    births = np.concatenate([o.birth, dup["birthdate"]])[order]
    birth_obj = np.full(n, None, dtype=object)
    ok = ~np.isnat(births)
    days, where = np.unique(births[ok], return_inverse=True)  # few distinct days: convert each once
    birth_obj[ok] = np.array(pd.DatetimeIndex(days).date, dtype=object)[where]
    dup_resp = np.where(rng.random(d) < 0.5, responsible[orig], rng.integers(2, managers + 2, d))
    dup_source = np.where(rng.random(d) < 0.6, source[orig],
                          np.array(SOURCES, dtype=object)[rng.choice(len(SOURCES), d, p=_p(SOURCE_P))])
    frame = pd.DataFrame({
        "id": np.arange(1, n + 1),
        "last_name": cat(o.last, dup["last"]), "first_name": cat(o.first, dup["first"]),
        "middle_name": cat(o.middle, dup["middle"]), "birthdate": birth_obj,
        "post": cat(post, dup["post"]), "address": cat(address, dup["address"]),
        "comments": cat(comments, dup["comments"]), "source": cat(source, dup_source),
        "tax_id": cat(tax_id, dup["tax_id"]),
        "responsible_id": np.concatenate([responsible, dup_resp])[order],
        "created_at": all_created[order], "modified_at": modified[order],
        "deleted_at": pd.Series([pd.NaT] * n, dtype="datetime64[s]"),
    })
    notes = np.concatenate([o.tags.notes(), np.array(dup["note"], dtype=object)])[order]
    origin = ids[np.concatenate([np.arange(m), orig])][order]
    truth = pd.DataFrame({"entity_id": np.arange(1, n + 1), "cluster": [f"{entity}:{x}" for x in origin],
                          "note": notes})
    comms = pd.DataFrame({"entity_id": ids[np.concatenate([c["owner"], dup["comm_owner"] + m])],
                          "type": np.concatenate([c["type"], np.array(dup["comm_type"], dtype=object)]),
                          "kind": np.concatenate([c["kind"], np.array(dup["comm_kind"], dtype=object)]),
                          "value": np.concatenate([c["value"], np.array(dup["comm_value"], dtype=object)])})
    comm_order = np.lexsort((np.concatenate([c["slot"], dup["comm_slot"]]), comms["entity_id"].to_numpy()))
    comms = comms.iloc[comm_order].reset_index(drop=True)
    return People(frame, comms, truth, origin, np.concatenate([ru, ru[orig]])[order],
                  np.concatenate([o.male, o.male[orig]])[order],
                  np.concatenate([o.employer, o.employer[orig]])[order], (c["phone"], dup["comm_phone"], comm_order))


def _person_names(rng: np.random.Generator, m: int) -> _Originals:
    """Russian (with patronymic, mostly) and English names, birthdates, a few forced namesakes."""
    v = _vocab()
    ru = rng.random(m) < RU_SHARE
    male = rng.random(m) < 0.5
    with_yo = rng.random(m) < 0.35  # most people write е for ё
    first = np.empty(m, dtype=object)
    last = np.empty(m, dtype=object)
    middle = np.full(m, None, dtype=object)

    def pick(names: _Names, mask: np.ndarray, idx=None) -> np.ndarray:
        if idx is None:
            idx = rng.choice(len(names.p), size=int(mask.sum()), p=names.p)
        return np.where(with_yo[mask], names.name[idx], names.name_e[idx])

    for key, mask in (("ru_m", ru & male), ("ru_f", ru & ~male), ("en_m", ~ru & male), ("en_f", ~ru & ~male)):
        first[mask] = pick(v.first[key], mask)
    surname = rng.choice(len(v.last_ru_m.p), size=m, p=v.last_ru_m.p)
    last[ru & male] = pick(v.last_ru_m, ru & male, surname[ru & male])
    last[ru & ~male] = pick(v.last_ru_f, ru & ~male, surname[ru & ~male])
    last[~ru] = v.last_en.name[rng.choice(len(v.last_en.p), size=int((~ru).sum()), p=v.last_en.p)]
    father = rng.choice(len(v.patr_m.p), size=m, p=v.first["ru_m"].p)
    has_patr = ru & (rng.random(m) < 0.8)
    middle[has_patr & male] = pick(v.patr_m, has_patr & male, father[has_patr & male])
    middle[has_patr & ~male] = pick(v.patr_f, has_patr & ~male, father[has_patr & ~male])
    for key, mask in (("en_m", ~ru & male), ("en_f", ~ru & ~male)):  # a few English middle names
        mask = mask & (rng.random(m) < 0.08)
        middle[mask] = v.first[key].name[rng.choice(len(v.first[key].p), int(mask.sum()))]
    # Namesakes: some people get one of a few very common full names
    common = [("Иванов", "Александр", "Сергеевич", True, True), ("Кузнецов", "Сергей", "Александрович", True, True),
              ("Смирнова", "Елена", "Владимировна", True, False), ("Иванова", "Ольга", "Николаевна", True, False),
              ("Smith", "John", None, False, True), ("Brown", "Sarah", None, False, False)]
    for i in np.flatnonzero(rng.random(m) < 0.012).tolist():
        cand = [c for c in common if c[3] == ru[i] and c[4] == male[i]]
        last[i], first[i], patronymic = cand[i % len(cand)][:3]
        if patronymic and (middle[i] is None or i % 2 == 0):
            middle[i] = patronymic
    birth = np.where(rng.random(m) < 0.4, END.astype("datetime64[D]") - rng.integers(22 * 365, 68 * 365, m),
                     np.datetime64("NaT"))
    return _Originals(ru, male, first, last, middle, birth, _Tags(m))


def _relatives(rng: np.random.Generator, o: _Originals) -> None:
    """Families (same surname, different first names) and fathers with sons of the same name."""
    v = _vocab()
    m = len(o)
    n_fam, n_fs = int(m * 0.012), int(m * 0.002)
    perm = rng.permutation(m)
    a, b = perm[:n_fam], perm[n_fam: 2 * n_fam]
    keep = o.ru[a] == o.ru[b]
    o.family_a, o.family_b = a[keep], b[keep]
    rest = perm[2 * n_fam:]
    men = rest[o.ru[rest] & o.male[rest]]
    o.father_son = np.column_stack([men[:n_fs], men[n_fs: 2 * n_fs]]).astype(np.int64)
    for a, b in zip(o.family_a.tolist(), o.family_b.tolist()):
        if o.male[a] == o.male[b]:
            o.last[b] = o.last[a]
        else:
            o.last[b] = _masculine(o.last[a]) if o.male[b] else _feminine(o.last[a])
        if o.first[b] == o.first[a]:
            group = list(v.first[("ru_" if o.ru[b] else "en_") + ("m" if o.male[b] else "f")].name_e)
            plain = o.first[a].replace("ё", "е")
            o.first[b] = group[(group.index(plain) + 1) % len(group)] if plain in group else group[0]
    o.tags.add(np.concatenate([o.family_a, o.family_b]), "family")
    names = list(v.first["ru_m"].name_e)
    for a, b in o.father_son.tolist():
        o.first[b], o.last[b] = o.first[a], o.last[a]
        j = names.index(o.first[a].replace("ё", "е")) if o.first[a].replace("ё", "е") in names else 0
        o.middle[b] = v.patr_m.name_e[j]  # the son's patronymic is the father's first name
        if not o.middle[a] or o.middle[a].replace("ё", "е") == o.middle[b]:  # told apart by patronymic
            o.middle[a] = v.patr_m.name_e[(j + 5) % len(names)]
        o.birth[a] = END.astype("datetime64[D]") - rng.integers(52 * 365, 72 * 365)
        o.birth[b] = o.birth[a] + rng.integers(24 * 365, 32 * 365)
    o.tags.add(o.father_son.ravel(), "father_son")


def _homes_and_employers(rng: np.random.Generator, o: _Originals, employers: _CompanyBasics | None) -> None:
    v = _vocab()
    m = len(o)
    o.ru_city = rng.choice(len(v.ru_cities), m, p=v.ru_city_p)
    o.en_city = rng.choice(len(v.en_cities), m, p=v.en_city_p)
    o.employer = np.full(m, -1, dtype=np.int64)
    if employers is None or not len(employers):
        return
    # most work for a company of their own language
    want_ru = np.where(rng.random(m) < 0.9, o.ru, ~o.ru)
    pool_ru = np.flatnonzero(employers.ru) if employers.ru.any() else np.arange(len(employers))
    pool_en = np.flatnonzero(~employers.ru) if (~employers.ru).any() else np.arange(len(employers))
    o.employer = np.where(want_ru, pool_ru[rng.integers(0, len(pool_ru), m)], pool_en[rng.integers(0, len(pool_en), m)])
    o.employer[rng.random(m) >= 0.55] = -1


def _person_phones(rng: np.random.Generator, o: _Originals, employers: _CompanyBasics | None) -> dict:
    """One or two phones (mobile, work) each; work phones are often the employer's switchboard; families
    share a home phone. Returns parallel arrays: owner, type, kind, value, slot and the phone parts."""
    v = _vocab()
    m = len(o)
    cc_person = np.where(o.ru | (rng.random(m) < 0.15), 7,
                         np.where(v.en_city_country[o.en_city] == "us", 1, 44)).astype(np.int64)
    area, alen = v.area_code(o.ru, o.ru_city, o.en_city, rng.integers(0, 2, m))
    expat = (cc_person == 7) & ~o.ru  # a foreigner with a Moscow office number
    area[expat], alen[expat] = 495, 3
    two = rng.random(m) < 0.4
    first_mobile = rng.random(m) < 0.7
    ext_all = rng.integers(10, 1000, m)
    slots = []  # one dict of equal-length arrays per phone slot
    for slot, owners, mobile in ((0, np.arange(m), first_mobile), (1, np.flatnonzero(two), ~first_mobile[two])):
        nsn, al = _new_numbers(rng, cc_person[owners], mobile, area[owners], alen[owners])
        cc = cc_person[owners].copy()
        shared = np.zeros(len(owners), dtype=bool)
        with_ext = ~mobile & (rng.random(len(owners)) < 0.08)
        if employers is not None:
            # the office switchboard: colleagues share it (a hard negative), often with their extension
            emp = o.employer[owners]
            sw = ~mobile & (emp >= 0) & (rng.random(len(owners)) < 0.45)
            e = emp[sw]
            cc[sw], nsn[sw], al[sw] = employers.phone_cc[e], employers.phone_nsn[e], employers.phone_alen[e]
            with_ext = np.where(sw, rng.random(len(owners)) < 0.55, with_ext)
            shared[sw] = True
            o.tags.add(owners[sw], "colleague_switchboard")
        ext = np.full(len(owners), None, dtype=object)
        ext[with_ext] = [str(x) for x in ext_all[owners[with_ext]].tolist()]
        slots.append(dict(owner=owners, kind=np.where(mobile, "mobile", "work").astype(object), cc=cc, nsn=nsn,
                          alen=al, ext=ext, shared=shared, slot=np.full(len(owners), 2 * slot)))
    heads = np.concatenate([o.family_a, o.father_son[:, 0]]).astype(np.int64)
    if len(heads):  # a family's home phone, the same number for both
        h_nsn, h_al = _new_numbers(rng, cc_person[heads], np.zeros(len(heads), dtype=bool), area[heads], alen[heads])
        owners = np.concatenate([heads, o.family_b, o.father_son[:, 1]]).astype(np.int64)
        slots.append(dict(owner=owners, kind=_const(len(owners), "home"), cc=np.tile(cc_person[heads], 2),
                          nsn=np.tile(h_nsn, 2), alen=np.tile(h_al, 2), ext=np.full(len(owners), None, dtype=object),
                          shared=np.ones(len(owners), dtype=bool), slot=np.full(len(owners), 4)))
    ph = {key: np.concatenate([s_[key] for s_ in slots]) for key in slots[0]}
    # distinct people have distinct numbers, except the shared ones: draw clashing ones again
    while (clash := pd.Series(ph["cc"] * 10**10 + ph["nsn"]).duplicated().to_numpy() & ~ph["shared"]).any():
        area_c = ph["nsn"][clash] // 10 ** (10 - ph["alen"][clash])
        ph["nsn"][clash], ph["alen"][clash] = _new_numbers(rng, ph["cc"][clash], ph["kind"][clash] == "mobile",
                                                           area_c, ph["alen"][clash])
    ph["style"] = np.zeros(len(ph["owner"]), dtype=np.int64)
    for code, (_f, p) in _FORMATS.items():
        sel = ph["cc"] == code
        ph["style"][sel] = rng.choice(len(p), int(sel.sum()), p=p)
    ph["ext_style"] = rng.integers(0, 7, len(ph["owner"]))
    ph["value"] = _render_phones(ph["cc"], ph["nsn"], ph["alen"], ph["style"], ph["ext"], ph["ext_style"])
    ph["type"] = _const(len(ph["owner"]), "phone")
    return ph


def _person_emails(rng: np.random.Generator, o: _Originals, employers: _CompanyBasics | None) -> dict:
    """A personal address (public domain), a work one (employer's domain, sometimes its shared info@),
    a family mailbox. Returns parallel arrays: owner, type, kind, value, slot."""
    m = len(o)
    pers_pattern = rng.choice(len(_LOCAL_P), m, p=_LOCAL_P)
    num = rng.integers(1960, 10_000, m)
    dom_ru, dom_en = list(_PUBLIC_RU), list(_PUBLIC_EN)
    dom = np.where(o.ru, np.array(dom_ru, dtype=object)[rng.choice(len(dom_ru), m, p=_p(list(_PUBLIC_RU.values())))],
                   np.array(dom_en, dtype=object)[rng.choice(len(dom_en), m, p=_p(list(_PUBLIC_EN.values())))])
    kinds = np.array(["work", "work", "home", "home", "other"], dtype=object)[rng.integers(0, 5, m)]
    pi = np.flatnonzero(rng.random(m) < 0.55)
    year = o.birth.astype("datetime64[Y]").astype(np.int64) + 1970  # garbage where NaT, masked below
    nn = np.where(~np.isnat(o.birth[pi]) & np.isin(pers_pattern[pi], (6, 11)), year[pi], num[pi])
    personal = [f"{_local(p, f or '', l or '', x)}@{dm}" for p, f, l, x, dm in
                zip(pers_pattern[pi].tolist(), o.first[pi].tolist(), o.last[pi].tolist(), nn.tolist(),
                    dom[pi].tolist())]
    em = [dict(owner=pi, kind=kinds[pi], value=np.array(personal, dtype=object), shared=np.zeros(len(pi), bool),
               slot=np.full(len(pi), 10))]
    if employers is not None:
        has_domain = np.array([x is not None for x in employers.domain], dtype=bool)
        wi = np.flatnonzero((o.employer >= 0) & (rng.random(m) < 0.45))
        wi = wi[has_domain[o.employer[wi]]]
        general = rng.random(len(wi)) < 0.25
        w_pattern = rng.choice(_WORK_PATTERNS, len(wi), p=_WORK_P)
        emp = o.employer[wi]
        value = employers.general_email[emp].copy()
        own = np.flatnonzero(~general)
        value[own] = [f"{_local(p, f or '', l or '', x)}@{dm}" for p, f, l, x, dm in
                      zip(w_pattern[own].tolist(), o.first[wi[own]].tolist(), o.last[wi[own]].tolist(),
                          num[wi[own]].tolist(), employers.domain[emp[own]].tolist())]
        o.tags.add(wi[general], "colleague_info_email")
        em.append(dict(owner=wi, kind=_const(len(wi), "work"), value=value, shared=general,
                       slot=9 + 2 * rng.integers(0, 2, len(wi))))  # before or after the personal one
    fam = o.family_a[rng.random(len(o.family_a)) < 0.5]  # half the families share a mailbox
    fam_b = o.family_b[np.isin(o.family_a, fam)]
    box = np.array([f"{_latin(_masculine(o.last[a]) if o.ru[a] else o.last[a])}{'y' if o.ru[a] else 's'}"
                    f"{num[a] % 100}@{dom[a]}" for a in fam.tolist()], dtype=object)
    em.append(dict(owner=np.concatenate([fam, fam_b]), kind=_const(2 * len(fam), "home"),
                   value=np.concatenate([box, box]), shared=np.ones(2 * len(fam), dtype=bool),
                   slot=np.full(2 * len(fam), 11)))
    out = {key: np.concatenate([e[key] for e in em]) for key in ("owner", "kind", "value", "shared", "slot")}
    out["owner"] = out["owner"].astype(np.int64)
    out["value"] = out["value"].astype(object)
    # distinct people have distinct addresses, except the shared ones (all are lower case here)
    while len(clash := np.flatnonzero(pd.Series(out["value"]).duplicated().to_numpy() & ~out["shared"])):
        out["value"][clash] = [f"{x.partition('@')[0]}{k}@{x.partition('@')[2]}" for x, k in
                               zip(out["value"][clash].tolist(), rng.integers(1, 100, len(clash)).tolist())]
    out["type"] = _const(len(out["owner"]), "email")
    return out


def _junk(rng: np.random.Generator, o: _Originals) -> None:
    """Real-CRM junk on some originals: placeholder phones and e-mails, invalid e-mails, empty names."""
    c = o.comms
    junk = rng.random(len(o))
    first_phone = np.flatnonzero((c["type"] == "phone") & (c["slot"] == 0))  # one per person
    for row in first_phone[junk[c["owner"][first_phone]] < 0.008].tolist():
        c["value"][row] = _PLACEHOLDER_PHONES[row % len(_PLACEHOLDER_PHONES)]
        c["phone"]["cc"][row] = 0
        o.tags.add(c["owner"][row], "placeholder_phone")
    emails = np.flatnonzero(c["type"] == "email")
    for row in emails[(junk[c["owner"][emails]] >= 0.016) & (junk[c["owner"][emails]] < 0.022)].tolist():
        c["value"][row] = _corrupt_email(c["value"][row], row)
        o.tags.add(c["owner"][row], "invalid_email")
    for i in np.flatnonzero((junk >= 0.022) & (junk < 0.025)).tolist():
        o.last[i], o.first[i], o.middle[i] = (None, None, None) if i % 2 else ("", "", None)
        o.tags.add(i, "empty_name")
    extra = np.flatnonzero((junk >= 0.008) & (junk < 0.016))
    o.tags.add(extra, "placeholder_email")
    placeholders = np.array(_PLACEHOLDER_EMAILS, dtype=object)[extra % len(_PLACEHOLDER_EMAILS)]
    for key, values in (("owner", extra), ("type", _const(len(extra), "email")), ("kind", _const(len(extra), "work")),
                        ("value", placeholders), ("slot", np.full(len(extra), 20))):
        c[key] = np.concatenate([c[key], values])
    c["phone"] = _concat_parts(c["phone"], _empty_parts(len(extra)))


def _dup_created(created: np.ndarray, later: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Duplicates are usually typed in later than their original, now and then earlier."""
    after = np.minimum(created + gap.astype("timedelta64[s]"), END - np.timedelta64(DAY, "s"))
    before = created - (gap // 3).astype("timedelta64[s]")
    return np.where(later | (before < START), after, before)


def _masculine(surname: str) -> str:
    for female, male in (("ская", "ский"), ("цкая", "цкий"), ("ова", "ов"), ("ёва", "ёв"), ("ева", "ев"),
                         ("ина", "ин"), ("ына", "ын"), ("ая", "ой")):
        if surname.endswith(female):
            return surname[: -len(female)] + male
    return surname


def _corrupt_email(value: str, salt: int) -> str:
    local, _, domain = value.partition("@")
    options = [f"{local}@{domain.split('.')[0]}", f"{local}.{domain}", f"{local}@@{domain}", f"{local} @{domain}",
               f"{local}@{domain.replace('.', ',')}", f"{value}.", f"{local}@{domain}@{domain}"]
    return options[salt % len(options)]


def _addresses(rng, ru, city, present) -> np.ndarray:
    """Addresses as typed: a city alone, or street and house, sometimes with postcode and flat."""
    m = len(ru)
    style = rng.integers(0, 4, m).tolist()
    house = rng.integers(1, 120, m).tolist()
    flat = rng.integers(1, 300, m).tolist()
    street = rng.integers(0, 100, m).tolist()
    zip_ = rng.integers(100000, 700000, m).tolist()
    out = np.full(m, None, dtype=object)
    rows = np.flatnonzero(present)
    text = []
    for i, c, is_ru in zip(rows.tolist(), city[rows].tolist(), ru[rows].tolist()):
        st = style[i]
        if is_ru:
            s = _RU_STREETS[street[i] % len(_RU_STREETS)]
            text.append(f"г. {c}" if st == 0 else c if st == 1 else f"г. {c}, ул. {s}, д. {house[i]}" if st == 2
                        else f"{zip_[i]}, г. {c}, ул. {s}, д. {house[i]}, кв. {flat[i]}")
        else:
            text.append(c if st in (0, 3) else f"{house[i]} {_EN_STREETS[street[i] % len(_EN_STREETS)]}, {c}")
    out[rows] = text
    return out


def _per_unique(values: np.ndarray, fn, dtype=bool) -> np.ndarray:
    """fn applied to each distinct value once (names repeat a lot), spread back to every row."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    out = np.array([fn(u) for u in uniques] + [fn(None)], dtype=dtype)
    return out[codes]  # code -1 (missing) picks fn(None), the last element


def _people_applicability(cols: dict, comm_owner, comm_type, comm_value, comm_cc, m: int) -> np.ndarray:
    """Which noise kinds apply to each original (rows) in the order of PERSON_NOISE + COMM_NOISE.

    Vectorised twin of the registries' applies() predicates, which still re-check every kind
    before it is applied (tests compare the two).
    """
    v = _vocab()

    def filled(col):
        return _per_unique(col, lambda x: bool(x))

    def long3(col):
        return _per_unique(col, lambda x: bool(x) and len(x) >= 3)

    def has_yo(col):
        return _per_unique(col, lambda x: bool(x) and ("ё" in x or any(w in v.yo for w in x.split())))

    last, first, middle = filled(cols["last"]), filled(cols["first"]), filled(cols["middle"])
    has_name = last | first
    optional = ~np.isnat(cols["birthdate"])
    for f in ("post", "address", "tax_id", "comments"):
        optional |= filled(cols[f])
    person = {
        "typo": long3(cols["last"]) | long3(cols["first"]),
        "translit": has_name, "swap_names": last & first, "fullname_one_field": last & first,
        "nickname": _per_unique(cols["first"], lambda x: x in v.nicknames),
        "patronymic_dropped": middle, "patronymic_added": cols["ru"] & ~middle & first,
        "case_spaces": has_name, "yo_e": has_yo(cols["last"]) | has_yo(cols["first"]) | has_yo(cols["middle"]),
        "sparse": optional,
    }
    is_phone, is_email = comm_type == "phone", comm_type == "email"
    at, lower, gmail = (np.zeros(len(comm_type), dtype=bool) for _ in range(3))
    emails = comm_value[is_email]
    at[is_email] = _per_unique(emails, lambda x: "@" in (x or ""))
    lower[is_email] = at[is_email] & _per_unique(emails, lambda x: x is not None and x != x.upper())
    gmail[is_email] = at[is_email] & _per_unique(emails, lambda x: (x or "").lower().endswith(("@gmail.com",
                                                                                                 "@googlemail.com")))

    def count(mask):
        return np.bincount(comm_owner[mask], minlength=m)

    phones, parsed, emails = count(is_phone), count(is_phone & (comm_cc > 0)), count(is_email)
    comm = {
        "phone_format": parsed > 0, "phone_ext": parsed > 0,
        "phone_dropped": (phones >= 2) | ((phones == 1) & (emails >= 1)), "phone_added": np.ones(m, bool),
        "email_case": count(lower) > 0, "gmail_dots": count(gmail) > 0, "plus_tag": count(at) > 0,
        "email_dropped": (emails >= 2) | ((emails == 1) & (phones >= 1)), "email_added": np.ones(m, bool),
    }
    table = {**person, **comm}
    return np.column_stack([table[name] for name in list(PERSON_NOISE) + list(COMM_NOISE)])


def _pick_kinds(rng: np.random.Generator, applicable: np.ndarray, names: list[str], weights: np.ndarray,
                k: np.ndarray) -> np.ndarray:
    """For each row, up to k[row] applicable kinds drawn by weight without replacement, at most one per
    conflict group; -1 pads. Weighted sampling by keys u ** (1 / w) (Efraimidis and Spirakis)."""
    keys = rng.random(applicable.shape) ** (1.0 / weights)
    keys[~applicable] = -1.0
    for group in _CONFLICTS:
        cols = [i for i, name in enumerate(names) if name in group]
        if len(cols) > 1:
            sub = keys[:, cols]
            best = sub.argmax(axis=1)
            loser = np.ones(sub.shape, dtype=bool)
            loser[np.arange(len(sub)), best] = False
            sub[loser] = -1.0
            keys[:, cols] = sub
    order = np.argsort(-keys, axis=1, kind="stable")[:, :3]
    ok = (np.take_along_axis(keys, order, axis=1) >= 0) & (np.arange(3) < k[:, None])
    return np.where(ok, order, -1)


def _duplicate_people(orig, r, rng, cols, comm_owner, comm_type, comm_kind, comm_value, comm_phone,
                      comm_slot) -> dict:
    """Noisy copies of the originals ``orig`` (in that order)."""
    d = len(orig)
    need = np.unique(orig)  # only the originals that have duplicates matter here
    rows = np.flatnonzero(np.isin(comm_owner, need))
    rows = rows[np.lexsort((comm_slot[rows], comm_owner[rows]))]
    registry = {**PERSON_NOISE, **COMM_NOISE}
    names = list(registry)
    weights = np.array([registry[x][0] for x in names], dtype=float)
    applicable = _people_applicability({f: col[need] for f, col in cols.items()},
                                       np.searchsorted(need, comm_owner[rows]), comm_type[rows], comm_value[rows],
                                       comm_phone["cc"][rows], len(need))
    picks = _pick_kinds(rng, applicable[np.searchsorted(need, orig)], names, weights,
                        rng.choice(_N_NOISES[0], d, p=_p(_N_NOISES[1]))).tolist()
    by_owner: dict[int, list[Comm]] = {}
    cols_ = [comm_owner[rows], comm_type[rows], comm_kind[rows], comm_value[rows], comm_slot[rows]]
    parts = [comm_phone[k][rows] for k in _PHONE_KEYS]
    for owner, type_, kind, value, slot, cc, nsn, alen, style, ext, ext_style in zip(
            *(col.tolist() for col in cols_ + parts)):  # plain lists: far faster than numpy scalars
        phone = Phone(cc, str(nsn), alen, style, ext, ext_style) if cc else None
        by_owner.setdefault(owner, []).append(Comm(type_, kind, value, phone, slot))
    out = {k: [] for k in ("last", "first", "middle", "post", "address", "tax_id", "comments", "note",
                           "comm_owner", "comm_type", "comm_kind", "comm_value", "comm_slot", "comm_phone")}
    birth = np.full(d, np.datetime64("NaT"), dtype="datetime64[D]")
    fields = ("last", "first", "middle", "post", "address", "tax_id", "comments", "ru", "male")
    lists = {f: cols[f].tolist() for f in fields}  # list indexing is much faster than numpy's
    has_birth = ~np.isnat(cols["birthdate"])
    for k, o in enumerate(orig.tolist()):
        rec = {f: lists[f][o] for f in fields}
        rec["birthdate"] = cols["birthdate"][o] if has_birth[o] else None
        rec["_first0"], rec["_last0"] = rec["first"], rec["last"]
        comms = [c.copy() for c in by_owner.get(o, ())]
        chosen = []
        for j in picks[k]:
            if j < 0:
                break
            name = names[j]
            _w, applies, fn = registry[name]
            if applies(rec, _comm_facts(comms) if name in COMM_NOISE else None):  # an earlier kind may forbid it
                fn(rec, comms, r)
                chosen.append(name)
        for f in ("last", "first", "middle", "post", "address", "tax_id", "comments"):
            out[f].append(rec[f])
        if rec["birthdate"] is not None:
            birth[k] = rec["birthdate"]
        out["note"].append("+".join(chosen))
        for j, c in enumerate(comms):
            out["comm_owner"].append(k)
            out["comm_type"].append(c.type)
            out["comm_kind"].append(c.kind)
            out["comm_value"].append(c.value)
            out["comm_phone"].append(c.phone)
            out["comm_slot"].append(c.slot if c.slot is not None else 30 + j)
    out["birthdate"] = birth
    out["comm_owner"] = np.array(out["comm_owner"], dtype=np.int64)
    out["comm_slot"] = np.array(out["comm_slot"], dtype=np.int64)
    return out


# =============================================================================================
# Public: contacts alone


def generate_contacts_frames(n: int, seed: int = 42, duplicate_share: float = 0.15, *, managers: int = 6
                             ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Contacts like the demo's, without a database: (contacts, communications, truth).

    contacts has the columns of the contacts table (ids 1..n); communications has entity_id, type,
    kind, value; truth has entity_id, cluster ("contact:<id>"), note. The employers (companies whose
    office phone and info@ address colleagues share) are generated too but not returned.
    """
    _check_sizes(contacts=n, managers=managers)
    _check_share(duplicate_share)
    _check_seed(seed)
    with collector_paused():
        # as many employers per contact as in the demo (2,550 original companies for 10,000 contacts)
        employers = _company_basics(max(1, round(n * 0.255)), _rngs(seed, _PART_EMPLOYERS)[0])
        rng, r = _rngs(seed, _PART_CONTACTS)
        people = _make_people(n, duplicate_share, rng, r, managers, employers)
    return people.frame, people.comms, people.truth


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"demo size {name}={value!r} must be a whole number >= 0")
    if sizes.get("managers", 1) < 1:
        raise ValueError("demo size managers must be at least 1 (records need a responsible manager)")


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a whole number >= 0")


def _check_share(share: float) -> None:
    if not 0 <= share <= 0.5:
        raise ValueError(f"duplicate_share={share!r} must be between 0 and 0.5")


# =============================================================================================
# Companies


@dataclass
class Companies:
    """Generated companies in id order (ids 1..n)."""
    frame: pd.DataFrame
    comms: pd.DataFrame
    truth: pd.DataFrame
    origin: np.ndarray
    records: list[dict]          # the title parts of every company (leads copy them)
    comm_phone: dict
    employers: _CompanyBasics    # the originals, with their ids


def _company_record(basics: _CompanyBasics, i: int, r: random.Random) -> dict:
    ru = bool(basics.ru[i])
    form = basics.form[i]
    if ru:
        quote = "none" if form == "ИП" else r.choices(list(_RU_QUOTE_P), weights=list(_RU_QUOTE_P.values()))[0]
        order = "pre" if form == "ИП" else r.choices(["pre", "comma", "post"], weights=[88, 6, 6])[0]
    else:
        quote, order = "none", r.choices(["post", "comma"], weights=[85, 15])[0]
    return dict(kind="company", name=basics.name[i], lang="ru" if ru else "en", ru=ru, form=form,
                form_style="short", quote=quote, order=order, script="native", finish=None,
                domain=basics.domain[i])


def _make_companies(n: int, share: float, rng: np.random.Generator, r: random.Random, managers: int) -> Companies:
    d = int(round(n * share))
    k = n - d
    basics = _company_basics(k, rng)
    records = [_company_record(basics, i, r) for i in range(k)]
    ru = basics.ru
    is_ip = basics.form == "ИП"
    inn = np.full(k, None, dtype=object)
    org = ru & ~is_ip & (rng.random(k) < 0.92)
    inn[org] = _inn(rng, int(org.sum()), 10)
    ip = is_ip & (rng.random(k) < 0.7)
    inn[ip] = _inn(rng, int(ip.sum()), 12)
    industry = np.array(_INDUSTRIES, dtype=object)[rng.choice(len(_INDUSTRIES), k, p=_p(_INDUSTRY_P))]
    industry[rng.random(k) < 0.2] = None
    address = _addresses(rng, ru, basics.city, rng.random(k) < 0.8)
    comments = np.full(k, None, dtype=object)
    has_comment = rng.random(k) < 0.1
    comments[has_comment] = np.array(_RU_COMMENTS, dtype=object)[rng.integers(0, len(_RU_COMMENTS),
                                                                              int(has_comment.sum()))]
    tags = [["similar_name"] if basics.similar[i] else [] for i in range(k)]
    comms_of: list[list[Comm]] = []
    junk = rng.random(k)
    for i, rec in enumerate(records):
        rec.update(tax_id=inn[i], industry=industry[i], address=address[i], comments=comments[i])
        rec["website"] = _website_variant(rec["domain"], r) if rec["domain"] and r.random() < 0.75 else None
        office = Phone(int(basics.phone_cc[i]), str(basics.phone_nsn[i]), int(basics.phone_alen[i]),
                       _weighted_index(r, _FORMATS[int(basics.phone_cc[i])][1]))
        comms = [Comm("phone", "work", office.render(), office)]
        if junk[i] < 0.015:
            comms[0] = Comm("phone", "work", _PLACEHOLDER_PHONES[i % len(_PLACEHOLDER_PHONES)])
            tags[i].append("placeholder_phone")
        if r.random() < 0.35:
            kind = "mobile" if is_ip[i] or r.random() < 0.4 else "work"
            ph = _py_new_phone(r, office.cc, kind)
            comms.append(Comm("phone", kind, ph.render(), ph))
        if basics.general_email[i] and r.random() < 0.75:
            comms.append(Comm("email", "work", basics.general_email[i]))
        if rec["domain"] and r.random() < 0.25:
            general = basics.general_email[i] or ""
            local = r.choice([x for x in ("sales", "zakaz", "buh", "manager") if f"{x}@" not in general])
            comms.append(Comm("email", "work", f"{local}@{rec['domain']}"))
        if not rec["domain"] and r.random() < 0.7:
            words = basics.name[i].split()  # a sole proprietor's own mailbox
            comms.append(Comm("email", "work", _personal_email(r, words[-1], words[0], ru[i])))
        if rec["website"] and r.random() < 0.4:
            comms.append(Comm("web", "work", rec["website"]))
        if 0.015 <= junk[i] < 0.025:
            comms.append(Comm("email", "work", _PLACEHOLDER_EMAILS[i % len(_PLACEHOLDER_EMAILS)]))
            tags[i].append("placeholder_email")
        comms_of.append(comms)
    titles = [render_title(rec) for rec in records]
    same = pd.Series([t.lower() for t in titles]).duplicated(keep=False).to_numpy()
    for i in np.flatnonzero(same):
        tags[i].append("namesake")
    # duplicates
    orig = _cluster_plan(rng, k, d)
    n_noise = r.choices(*_N_NOISES, k=d)
    registry = {**COMPANY_NOISE, **COMM_NOISE}
    notes = ["+".join(["original"] + t) for t in tags]
    for j, o in enumerate(orig.tolist()):
        rec = dict(records[o])
        comms = [c.copy() for c in comms_of[o]]
        chosen = _apply_noise(rec, comms, registry, r, n_noise[j])
        records.append(rec)
        comms_of.append(comms)
        titles.append(render_title(rec))
        notes.append("+".join(chosen))
    # ids by creation time
    created = START + rng.integers(0, int((END - START).astype(int)) - 90 * DAY, k).astype("timedelta64[s]")
    gap = rng.exponential(150 * DAY, d).astype(np.int64) + 3600
    all_created = np.concatenate([created, _dup_created(created[orig], rng.random(d) < 0.85, gap)])
    modified = all_created + np.minimum(rng.exponential(120 * DAY, n).astype(np.int64),
                                        (END - all_created).astype(np.int64)).astype("timedelta64[s]")
    order = np.lexsort((np.arange(n), all_created))
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.arange(1, n + 1)
    responsible = rng.integers(2, managers + 2, k)
    responsible = np.concatenate([responsible, np.where(rng.random(d) < 0.5, responsible[orig],
                                                        rng.integers(2, managers + 2, d))])
    source = np.array(SOURCES, dtype=object)[rng.choice(len(SOURCES), n, p=_p(SOURCE_P))]
    source[k:] = np.where(rng.random(d) < 0.6, source[orig], source[k:])
    records = [records[g] for g in order]
    frame = pd.DataFrame({
        "id": np.arange(1, n + 1),
        "title": np.array(titles, dtype=object)[order],
        "industry": [rec.get("industry") for rec in records],
        "address": [rec.get("address") for rec in records],
        "tax_id": [rec.get("tax_id") for rec in records],
        "website": [rec.get("website") for rec in records],
        "comments": [rec.get("comments") for rec in records],
        "source": source[order], "responsible_id": responsible[order],
        "created_at": all_created[order], "modified_at": modified[order],
        "deleted_at": pd.Series([pd.NaT] * n, dtype="datetime64[s]"),
    })
    origin_gen = np.concatenate([np.arange(k), orig])
    origin = ids[origin_gen][order]
    truth = pd.DataFrame({"entity_id": np.arange(1, n + 1), "cluster": [f"company:{o}" for o in origin],
                          "note": np.array(notes, dtype=object)[order]})
    comms_by_id = [comms_of[g] for g in order]
    comms = pd.DataFrame([(i + 1, c.type, c.kind, c.value) for i, cs in enumerate(comms_by_id) for c in cs],
                         columns=["entity_id", "type", "kind", "value"])
    phones = _phone_parts([c.phone for cs in comms_by_id for c in cs])
    basics.ids = ids[:k]
    return Companies(frame, comms, truth, origin, records, phones, basics)


# =============================================================================================
# Leads: persons, companies or both; some repeat a lead, a contact or a company

LEAD_STATUSES = ["NEW", "IN_PROCESS", "PROCESSED", "JUNK", "CONVERTED"]
_RU_LEAD_TITLES = ["Заявка с сайта", "Входящий звонок", "Запрос КП", "Заявка с выставки", "Запрос цены",
                   "Обратный звонок", "Письмо с сайта", "Заявка от партнёра"]
_EN_LEAD_TITLES = ["Website inquiry", "Inbound call", "Quote request", "Demo request", "Trade show lead",
                   "Price request", "Partner referral"]


@dataclass
class Leads:
    frame: pd.DataFrame
    comms: pd.DataFrame
    truth: pd.DataFrame


def _comm_lists(comms: pd.DataFrame, phones: dict, n: int, rows: np.ndarray | None = None) -> list[list[Comm]]:
    """Per record (index id-1), its communications; only ``rows`` of ``comms`` when given."""
    out: list[list[Comm]] = [[] for _ in range(n)]
    rows = np.arange(len(comms)) if rows is None else rows
    eid, t, k, v = (comms[c].to_numpy() for c in ("entity_id", "type", "kind", "value"))
    for i in rows.tolist():
        out[eid[i] - 1].append(Comm(t[i], k[i], v[i], _phone_at(phones, i)))
    return out


def _person_record(frame: pd.DataFrame, i: int, ru: bool, male: bool) -> dict:
    row = frame.iloc[i]
    rec = dict(last=row["last_name"], first=row["first_name"], middle=row["middle_name"], ru=bool(ru),
               male=bool(male))
    rec["_first0"], rec["_last0"] = rec["first"], rec["last"]
    return rec


def _make_leads(n: int, seed: int, managers: int, contacts: People, companies: Companies,
                links: pd.DataFrame) -> Leads:
    rng, r = _rngs(seed, _PART_LEADS)
    n_contacts, n_companies = len(contacts.frame), len(companies.frame)
    n_of_lead = int(round(n * 0.07))
    n_of_contact = int(round(n * 0.06)) if n_contacts else 0
    n_of_company = int(round(n * 0.03)) if n_companies else 0
    k = n - n_of_lead - n_of_contact - n_of_company
    if k < 1:  # too few leads to repeat anything: all are originals
        k, n_of_lead, n_of_contact, n_of_company = n, 0, 0, 0
    # originals: a pool of new persons and of new companies
    p_rng, p_r = _rngs(seed, _PART_LEAD_PEOPLE)
    pool = _make_people(k, 0.0, p_rng, p_r, managers, None, entity="lead")
    pool_comms = _comm_lists(pool.comms, pool.comm_phone, k)
    cbasics = _company_basics(max(k, 1), rng)
    kind = rng.choice(["person", "company", "both"], k, p=[0.45, 0.25, 0.30])
    leads: list[dict] = []
    for i in range(k):
        person = _person_record(pool.frame, i, pool.ru[i], pool.male[i]) if kind[i] != "company" else None
        crec = _company_record(cbasics, i, r) if kind[i] != "person" else None
        comms = [c.copy() for c in pool_comms[i]] if person else []
        if crec:
            office = Phone(int(cbasics.phone_cc[i]), str(cbasics.phone_nsn[i]), int(cbasics.phone_alen[i]),
                           _weighted_index(r, _FORMATS[int(cbasics.phone_cc[i])][1]))
            if not person or r.random() < 0.3:
                comms.insert(0, Comm("phone", "work", office.render(), office))
            if cbasics.general_email[i] and (not person or r.random() < 0.2):
                comms.append(Comm("email", "work", cbasics.general_email[i]))
        ru = person["ru"] if person else crec["ru"]
        note = pool.truth["note"].iat[i] if person else "original"
        leads.append(dict(person=person, company=crec, comms=comms, ru=ru, note=note, origin=None,
                          status=r.choices(LEAD_STATUSES[:4], weights=[30, 30, 20, 20])[0], contact_id=None,
                          company_id=None, after=None))
    # repeats of leads
    n_noise = r.choices(*_N_NOISES, k=n_of_lead + n_of_contact + n_of_company)
    registry_p = {**PERSON_NOISE, **COMM_NOISE}
    registry_c = {**COMPANY_NOISE, **COMM_NOISE}
    for j in range(n_of_lead):
        o = r.randrange(k)
        src = leads[o]
        person = dict(src["person"]) if src["person"] else None
        crec = dict(src["company"]) if src["company"] else None
        comms = [c.copy() for c in src["comms"]]
        chosen = _apply_noise(person if person else crec, comms, registry_p if person else registry_c, r, n_noise[j])
        if person and crec and len(chosen) < 3 and r.random() < 0.3:
            chosen = _apply_noise(crec, comms, COMPANY_NOISE, r, 1, chosen)
        leads.append(dict(person=person, company=crec, comms=comms, ru=src["ru"], note="+".join(chosen),
                          origin=("lead", o), status=r.choices(LEAD_STATUSES[:4], weights=[40, 30, 10, 20])[0],
                          contact_id=None, company_id=None, after=None))
    # a contact typed in again as a lead
    contact_lists = None
    if n_of_contact:
        picks = rng.choice(n_contacts, n_of_contact, replace=n_of_contact > n_contacts)
        wanted = set(picks.tolist())
        sub = np.flatnonzero(contacts.comms["entity_id"].isin([p + 1 for p in wanted]).to_numpy())
        contact_lists = _comm_lists(contacts.comms, contacts.comm_phone, n_contacts, sub)
        primary = links[links["is_primary"]]
        link_of = dict(zip(primary["contact_id"].tolist(), primary["company_id"].tolist()))
        contact_created = contacts.frame["created_at"].to_numpy().astype("datetime64[s]")
        for j, c in enumerate(picks.tolist()):
            person = _person_record(contacts.frame, c, contacts.ru[c], contacts.male[c])
            comms = [x.copy() for x in contact_lists[c]]
            chosen = _apply_noise(person, comms, registry_p, r, n_noise[n_of_lead + j] - 1, ["lead_of_contact"])
            company_id = link_of.get(c + 1)
            crec = dict(companies.records[company_id - 1]) if company_id and r.random() < 0.5 else None
            converted = r.random() < 0.35
            leads.append(dict(person=person, company=crec, comms=comms, ru=person["ru"], note="+".join(chosen),
                              origin=("contact", c), status="CONVERTED" if converted else
                              r.choices(LEAD_STATUSES[:4], weights=[40, 30, 20, 10])[0],
                              contact_id=c + 1 if converted or r.random() < 0.2 else None,
                              company_id=company_id if converted and crec else None,
                              after=contact_created[c]))
    if n_of_company:
        unused = np.flatnonzero(kind == "company").tolist()  # pool persons no original lead names
        picks = rng.choice(n_companies, n_of_company, replace=n_of_company > n_companies)
        company_lists = _comm_lists(companies.comms, companies.comm_phone, n_companies)
        company_created = companies.frame["created_at"].to_numpy().astype("datetime64[s]")
        for j, c in enumerate(picks.tolist()):
            crec = dict(companies.records[c])
            comms = [x.copy() for x in company_lists[c]]
            chosen = _apply_noise(crec, comms, registry_c, r, n_noise[n_of_lead + n_of_contact + j] - 1,
                                  ["lead_of_company"])
            person = None
            if unused and r.random() < 0.4:  # the person who called: no known contact, no other lead
                q = unused.pop()
                person = _person_record(pool.frame, q, pool.ru[q], pool.male[q])
            converted = r.random() < 0.35
            leads.append(dict(person=person, company=crec, comms=comms, ru=crec["ru"], note="+".join(chosen),
                              origin=("company", c), status="CONVERTED" if converted else
                              r.choices(LEAD_STATUSES[:4], weights=[40, 30, 20, 10])[0], contact_id=None,
                              company_id=c + 1 if converted or r.random() < 0.2 else None,
                              after=company_created[c]))
    # creation times: repeats come later than what they repeat
    created = START + rng.integers(0, int((END - START).astype(int)) - 90 * DAY, n).astype("timedelta64[s]")
    for j, lead in enumerate(leads):
        if lead["after"] is not None:
            created[j] = _dup_created(np.array([lead["after"]]), np.array([True]),
                                      rng.exponential(200 * DAY, 1).astype(np.int64) + 3600)[0]
    for j, lead in enumerate(leads):
        if lead["origin"] and lead["origin"][0] == "lead":
            o = lead["origin"][1]
            created[j] = _dup_created(created[o:o + 1], rng.random(1) < 0.85,
                                      rng.exponential(60 * DAY, 1).astype(np.int64) + 600)[0]
    modified = created + np.minimum(rng.exponential(60 * DAY, n).astype(np.int64),
                                    (END - created).astype(np.int64)).astype("timedelta64[s]")
    order = np.lexsort((np.arange(n), created))
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.arange(1, n + 1)
    rows, comm_rows, truth = [], [], []
    responsible = rng.integers(2, managers + 2, n)
    source = np.array(SOURCES, dtype=object)[rng.choice(len(SOURCES), n, p=_p(SOURCE_P))]
    comment = rng.integers(0, 100, n)
    for g in order.tolist():
        lead = leads[g]
        p, c = lead["person"], lead["company"]
        title_company = render_title(c) if c else None
        lead_id = int(ids[g])
        titles = _RU_LEAD_TITLES if lead["ru"] else _EN_LEAD_TITLES
        title = titles[g % len(titles)]
        if p and p["last"] and g % 3 == 0:
            title = f"{title}: {(p['last'] or '').strip()} {(p['first'] or '').strip()}".strip()
        elif title_company and g % 3 == 1:
            title = f"{title} — {title_company.strip()}"
        rows.append(dict(id=lead_id, title=title, last_name=p["last"] if p else None,
                         first_name=p["first"] if p else None, middle_name=p["middle"] if p else None,
                         company_title=title_company, status=lead["status"], source=source[g],
                         comments=(_RU_COMMENTS if lead["ru"] else _EN_COMMENTS)[comment[g] % 6] if comment[g] < 12
                         else None, contact_id=lead["contact_id"], company_id=lead["company_id"],
                         responsible_id=int(responsible[g]), created_at=created[g], modified_at=modified[g],
                         deleted_at=None))
        for cm in lead["comms"]:
            comm_rows.append((lead_id, cm.type, cm.kind, cm.value))
        origin = lead["origin"]
        if origin is None:
            cluster = f"lead:{lead_id}"
        elif origin[0] == "lead":
            cluster = f"lead:{ids[origin[1]]}"
        elif origin[0] == "contact":
            cluster = contacts.truth["cluster"].iat[origin[1]]
        else:
            cluster = companies.truth["cluster"].iat[origin[1]]
        truth.append((lead_id, cluster, lead["note"]))
    frame = pd.DataFrame(rows, columns=[c.name for c in schema.leads.columns])
    frame["contact_id"] = frame["contact_id"].astype("Int64")
    frame["company_id"] = frame["company_id"].astype("Int64")
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    frame["modified_at"] = pd.to_datetime(frame["modified_at"])
    frame["deleted_at"] = pd.Series([pd.NaT] * n, dtype="datetime64[s]")
    return Leads(frame, pd.DataFrame(comm_rows, columns=["entity_id", "type", "kind", "value"]),
                 pd.DataFrame(truth, columns=["entity_id", "cluster", "note"]))


# =============================================================================================
# Links: contact-company, deals, invoices, quotes, activities, history

_DEAL_STAGES = ["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE", "WON", "LOSE"]
_DEAL_STAGE_P = [15, 12, 10, 12, 8, 28, 15]
_INVOICED = {"PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE", "WON"}
_RU_DEALS = ["Поставка оборудования", "Внедрение CRM", "Лицензии ПО", "Консультационные услуги", "Аренда техники",
             "Сервисное обслуживание", "Поставка материалов", "Разработка сайта"]
_EN_DEALS = ["Hardware supply", "CRM implementation", "Software licenses", "Consulting services",
             "Equipment rental", "Support contract", "Website development"]
_SUBJECTS = {
    "call": (["Звонок клиенту", "Входящий звонок", "Перезвонить по КП", "Уточнить реквизиты"],
             ["Call back", "Intro call", "Follow-up call", "Check the details"]),
    "meeting": (["Встреча в офисе", "Презентация продукта", "Встреча на выставке"],
                ["Meeting at the client's office", "Product demo", "Meeting at the expo"]),
    "email": (["Отправлено КП", "Письмо с прайсом", "Отправлен договор"],
              ["Sent the proposal", "Price list e-mailed", "Contract sent"]),
    "task": (["Подготовить договор", "Выставить счёт", "Проверить оплату"],
             ["Prepare the contract", "Issue the invoice", "Check the payment"]),
}
_HISTORY = {
    "updated": (["Изменено поле «Телефон»", "Изменено поле «E-mail»", "Изменено поле «Должность»",
                 "Изменено поле «Адрес»"], ["Phone changed", "E-mail changed", "Post changed", "Address changed"]),
    "comment": (["Комментарий: просит скидку", "Комментарий: перезвонить в пятницу", "Комментарий: ждёт счёт"],
                ["Comment: asks for a discount", "Comment: call back on Friday", "Comment: waiting for the invoice"]),
    "responsible_changed": (["Сменился ответственный"], ["Responsible manager changed"]),
}
_CREATED_MSG = {"contact": ("Создан контакт", "Contact created"), "company": ("Создана компания", "Company created"),
                "lead": ("Создан лид", "Lead created")}


def _money(cents: np.ndarray) -> list[Decimal]:
    return [Decimal(int(c)).scaleb(-2) for c in cents]


def _after(rng, start: np.ndarray, mean_days: float) -> np.ndarray:
    """A moment after ``start`` (datetime64[s]), never after the demo's "now"."""
    gap = rng.exponential(mean_days * DAY, len(start)).astype(np.int64) + 600
    return np.minimum(start + gap.astype("timedelta64[s]"), END)


def _by_id(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column indexed by id (position 0 unused), for quick lookups."""
    values = frame[column].to_numpy()
    if column.endswith("_at"):
        values = values.astype("datetime64[s]")
    return np.concatenate([values[:1], values]) if len(values) else values


def _contact_links(rng, contacts: People, companies: Companies) -> pd.DataFrame:
    n = len(contacts.frame)
    emp = contacts.employer
    has = emp >= 0
    company = np.zeros(n, dtype=np.int64)
    company[has] = companies.employers.ids[emp[has]]
    # a duplicate contact is sometimes linked to a duplicate of its company, sometimes not at all
    dups_of: dict[int, list[int]] = {}
    for cid, origin in enumerate(companies.origin.tolist(), start=1):
        if cid != origin:
            dups_of.setdefault(origin, []).append(cid)
    is_dup = contacts.origin != np.arange(1, n + 1)
    u = rng.random(n)
    pick = rng.integers(0, 4, n)
    for i in np.flatnonzero(is_dup & has):
        if u[i] < 0.1:
            company[i] = 0
        elif u[i] < 0.4 and company[i] in dups_of:
            options = dups_of[company[i]]
            company[i] = options[pick[i] % len(options)]
    linked = np.flatnonzero(company > 0)
    frame = pd.DataFrame({"contact_id": linked + 1, "company_id": company[linked], "is_primary": True})
    # a few contacts also work with a second company
    n_comp = len(companies.frame)
    second = linked[rng.random(len(linked)) < 0.05]
    if n_comp > 1 and len(second):
        other = rng.integers(1, n_comp + 1, len(second))
        other = np.where(other == company[second], other % n_comp + 1, other)
        frame = pd.concat([frame, pd.DataFrame({"contact_id": second + 1, "company_id": other, "is_primary": False})])
    return frame.sort_values(["contact_id", "company_id"], kind="stable").reset_index(drop=True)


def _deals(rng, contacts: People, companies: Companies, leads: Leads, links: pd.DataFrame, managers: int
           ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    nc, nk = len(contacts.frame), len(companies.frame)
    n_deals = int(round(0.3 * nc + 0.35 * nk))
    lf = leads.frame
    conv = lf[(lf["status"] == "CONVERTED") & (lf["contact_id"].notna() | lf["company_id"].notna())]
    primary = links[links["is_primary"]]
    link_of = dict(zip(primary["contact_id"].tolist(), primary["company_id"].tolist()))
    contact_id = conv["contact_id"].fillna(0).astype(np.int64).to_numpy()
    company_id = conv["company_id"].fillna(0).astype(np.int64).to_numpy()
    company_id = np.where((company_id == 0) & (contact_id > 0),
                          [link_of.get(c, 0) for c in contact_id], company_id).astype(np.int64)
    lead_id = conv["id"].to_numpy().astype(np.int64)
    rest = max(n_deals - len(conv), 0)
    kinds = []
    if nc:
        kinds += [0]
    if nk:
        kinds += [1]
    if len(primary):
        kinds += [2]
    if rest and kinds:
        kind = rng.choice(kinds, rest, p=_p([{0: 30, 1: 25, 2: 45}[k] for k in kinds]))
        c = np.zeros(rest, dtype=np.int64)
        k = np.zeros(rest, dtype=np.int64)
        c[kind == 0] = rng.integers(1, nc + 1, int((kind == 0).sum())) if nc else 0
        k[kind == 1] = rng.integers(1, nk + 1, int((kind == 1).sum())) if nk else 0
        if len(primary):
            row = rng.integers(0, len(primary), int((kind == 2).sum()))
            c[kind == 2] = primary["contact_id"].to_numpy()[row]
            k[kind == 2] = primary["company_id"].to_numpy()[row]
        contact_id = np.concatenate([contact_id, c])
        company_id = np.concatenate([company_id, k])
        lead_id = np.concatenate([lead_id, np.zeros(rest, dtype=np.int64)])
    n = len(contact_id)
    c_created, k_created, l_created = (_by_id(contacts.frame, "created_at"), _by_id(companies.frame, "created_at"),
                                       _by_id(lf, "created_at"))
    c_resp, k_resp = _by_id(contacts.frame, "responsible_id"), _by_id(companies.frame, "responsible_id")
    l_resp = _by_id(lf, "responsible_id")
    base = np.full(n, START)
    if nc:
        base = np.where(contact_id > 0, np.maximum(base, c_created[contact_id]), base)
    if nk:
        base = np.where(company_id > 0, np.maximum(base, k_created[company_id]), base)
    if len(lf):
        base = np.where(lead_id > 0, np.maximum(base, l_created[lead_id]), base)
    created = _after(rng, base, 45)
    owner = np.where(contact_id > 0, c_resp[contact_id] if nc else 0, k_resp[company_id] if nk else 0)
    owner = np.where(lead_id > 0, l_resp[lead_id] if len(lf) else 0, owner)
    owner = np.where(rng.random(n) < 0.8, owner, rng.integers(2, managers + 2, n))
    ru_c = np.concatenate([[True], contacts.ru]) if nc else np.array([True])
    ru_k = np.concatenate([[True], [rec["ru"] for rec in companies.records]]).astype(bool) if nk else np.array([True])
    ru = np.where(contact_id > 0, ru_c[np.minimum(contact_id, nc)], ru_k[np.minimum(company_id, nk)])
    u = rng.random(n)
    currency = np.where(ru, np.where(u < 0.9, "RUB", np.where(u < 0.96, "USD", "EUR")),
                        np.where(u < 0.6, "USD", np.where(u < 0.85, "EUR", "RUB")))
    amount = np.where(currency == "RUB", rng.lognormal(np.log(150_000), 1.0, n), rng.lognormal(np.log(4_000), 1.0, n))
    cents = np.where(rng.random(n) < 0.7, np.round(amount) * 100, np.round(amount * 100)).astype(np.int64)
    cents = np.maximum(cents, 100)
    stage = np.array(_DEAL_STAGES, dtype=object)[rng.choice(len(_DEAL_STAGES), n, p=_p(_DEAL_STAGE_P))]
    order = np.lexsort((np.arange(n), created))
    contact_id, company_id, lead_id, created, owner, ru, currency, cents, stage = (
        a[order] for a in (contact_id, company_id, lead_id, created, owner, ru, currency, cents, stage))
    ids = np.arange(1, n + 1)
    phrase = rng.integers(0, 100, n)
    titles = []
    for i in range(n):
        phrases = _RU_DEALS if ru[i] else _EN_DEALS
        titles.append(f"{phrases[phrase[i] % len(phrases)]} #{ids[i]}")
    deals = pd.DataFrame({
        "id": ids, "title": titles,
        "contact_id": pd.array(np.where(contact_id > 0, contact_id, 0), dtype="Int64"),
        "company_id": pd.array(company_id, dtype="Int64"), "lead_id": pd.array(lead_id, dtype="Int64"),
        "stage": stage, "amount": _money(cents), "currency": currency, "responsible_id": owner,
        "created_at": created})
    for col in ("contact_id", "company_id", "lead_id"):
        deals.loc[deals[col] == 0, col] = pd.NA
    # invoices and quotes on deals
    invoiced = np.isin(stage, list(_INVOICED))
    n_inv = np.where(invoiced, 1 + (rng.random(n) < 0.3), rng.random(n) < 0.15).astype(np.int64)
    n_quo = (rng.random(n) < 0.45).astype(np.int64) + (rng.random(n) < 0.1)
    docs = []
    for count, statuses, weights_won, weights, lo, hi in (
            (n_inv, ["NEW", "SENT", "PAID", "OVERDUE", "CANCELLED"], [2, 5, 85, 3, 5], [20, 30, 25, 15, 10], 0.3, 1.0),
            (n_quo, ["DRAFT", "SENT", "APPROVED", "DECLINED"], [2, 8, 85, 5], [30, 35, 15, 20], 0.9, 1.2)):
        deal_idx = np.repeat(np.arange(n), count)
        m = len(deal_idx)
        won = stage[deal_idx] == "WON"
        st = np.where(won, np.array(statuses, dtype=object)[rng.choice(len(statuses), m, p=_p(weights_won))],
                      np.array(statuses, dtype=object)[rng.choice(len(statuses), m, p=_p(weights))])
        doc_cents = np.maximum((cents[deal_idx] * rng.uniform(lo, hi, m)).round(-2).astype(np.int64), 100)
        doc_created = _after(rng, created[deal_idx], 20)
        doc_order = np.lexsort((np.arange(m), doc_created))
        deal_idx, st = deal_idx[doc_order], st[doc_order]
        doc_cents, doc_created = doc_cents[doc_order], doc_created[doc_order]
        docs.append(pd.DataFrame({
            "id": np.arange(1, m + 1), "deal_id": ids[deal_idx],
            "contact_id": deals["contact_id"].to_numpy()[deal_idx],
            "company_id": deals["company_id"].to_numpy()[deal_idx],
            "amount": _money(doc_cents), "currency": currency[deal_idx], "status": st, "created_at": doc_created}))
    for doc in docs:
        doc["contact_id"] = doc["contact_id"].astype("Int64")
        doc["company_id"] = doc["company_id"].astype("Int64")
    return deals, docs[0], docs[1]


def _events(rng, contacts: People, companies: Companies, leads: Leads, managers: int
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Activities and history, bound by (entity_type, entity_id), over originals and duplicates alike."""
    company_ru = np.array([rec["ru"] for rec in companies.records], dtype=bool)
    ent = [("contact", contacts.frame, contacts.ru, 1.2), ("company", companies.frame, company_ru, 1.8),
           ("lead", leads.frame, None, 0.9)]
    act, hist = [], []
    for etype, frame, ru, lam in ent:
        n = len(frame)
        if n == 0:
            continue
        if ru is None:  # leads: Russian unless the name or title is Latin
            text = frame["last_name"].fillna("") + frame["company_title"].fillna("") + frame["title"].fillna("")
            ru = text.str.contains("[а-яА-ЯёЁ]", regex=True).to_numpy()
        ids = frame["id"].to_numpy()
        created = frame["created_at"].to_numpy().astype("datetime64[s]")
        resp = frame["responsible_id"].to_numpy()
        # activities
        count = rng.poisson(lam, n)
        idx = np.repeat(np.arange(n), count)
        m = len(idx)
        kind = np.array(list(_SUBJECTS), dtype=object)[rng.choice(4, m, p=_p([40, 15, 25, 20]))]
        pick = rng.integers(0, 100, m)
        subject = [_SUBJECTS[k][0 if ru[i] else 1][p % len(_SUBJECTS[k][0 if ru[i] else 1])]
                   for k, i, p in zip(kind, idx, pick)]
        span = (END - created[idx]).astype(np.int64)
        when = created[idx] + (rng.random(m) * span).astype(np.int64).astype("timedelta64[s]")
        done = rng.random(m) < np.where(when < END - np.timedelta64(30 * DAY, "s"), 0.8, 0.3)
        who = np.where(rng.random(m) < 0.85, resp[idx], rng.integers(2, managers + 2, m))
        act.append(pd.DataFrame({"entity_type": etype, "entity_id": ids[idx], "kind": kind, "subject": subject,
                                 "completed": done, "responsible_id": who, "created_at": when}))
        # history: a "created" event for every record, then some changes
        lang = np.where(ru, 0, 1)
        hist.append(pd.DataFrame({"entity_type": etype, "entity_id": ids, "event": "created",
                                  "message": [_CREATED_MSG[etype][g] for g in lang], "user_id": resp,
                                  "created_at": created}))
        count = rng.poisson(0.7, n)
        idx = np.repeat(np.arange(n), count)
        m = len(idx)
        events = ["updated", "comment", "responsible_changed"] + (["status_changed"] if etype == "lead" else [])
        event = np.array(events, dtype=object)[rng.integers(0, len(events), m)]
        pick = rng.integers(0, 100, m)
        message = []
        for e, i, p in zip(event, idx, pick):
            if e == "status_changed":
                message.append(f"{'Статус' if ru[i] else 'Status'}: {LEAD_STATUSES[p % 4]}")
            else:
                options = _HISTORY[e][0 if ru[i] else 1]
                message.append(options[p % len(options)])
        span = (END - created[idx]).astype(np.int64)
        when = created[idx] + (rng.random(m) * span).astype(np.int64).astype("timedelta64[s]")
        hist.append(pd.DataFrame({"entity_type": etype, "entity_id": ids[idx], "event": event, "message": message,
                                  "user_id": np.where(rng.random(m) < 0.8, resp[idx], rng.integers(1, managers + 2, m)),
                                  "created_at": when}))
    out = []
    for parts, columns in ((act, [c.name for c in schema.activities.columns]),
                           (hist, [c.name for c in schema.history.columns])):
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns[1:])
        frame = frame.iloc[np.lexsort((np.arange(len(frame)), frame["created_at"].to_numpy()))].reset_index(drop=True)
        frame.insert(0, "id", np.arange(1, len(frame) + 1))
        out.append(frame[columns])
    return out[0], out[1]


# =============================================================================================
# Users

_MANAGERS = [("Анна Смирнова", "a.smirnova", "Отдел продаж"), ("Дмитрий Козлов", "d.kozlov", "Отдел продаж"),
             ("Ольга Новикова", "o.novikova", "Ключевые клиенты"), ("Игорь Волков", "i.volkov", "Отдел продаж"),
             ("Мария Лебедева", "m.lebedeva", None), ("Sarah Miller", "s.miller", "International sales"),
             ("Павел Орлов", "p.orlov", "Отдел продаж"), ("Екатерина Белова", "e.belova", "Ключевые клиенты"),
             ("James Carter", "j.carter", "International sales"), ("Наталья Соколова", "n.sokolova", None)]


def _users(managers: int) -> pd.DataFrame:
    rows = [dict(id=1, name="Admin", email="admin@example.com", phone="+7 (495) 540-00-00", role="admin",
                 department=None, password_hash=None, signed_out_at=None)]
    for i in range(1, managers + 1):
        name, login, dept = _MANAGERS[i - 1] if i <= len(_MANAGERS) else (f"Менеджер {i}", f"manager{i}", None)
        rows.append(dict(id=i + 1, name=name, email=f"{login}@example.com",
                         phone=f"+7 (495) 540-{i // 100 + 10:02d}-{i % 100:02d}", role="manager", department=dept,
                         password_hash=None, signed_out_at=None))
    return pd.DataFrame(rows)


# =============================================================================================
# Public: the whole demo CRM


@dataclass
class DemoSizes:
    """How many records the demo gets (about 15% of contacts, companies and leads are duplicates)."""
    contacts: int = 10_000
    companies: int = 3_000
    leads: int = 3_000
    managers: int = 6


DUPLICATE_SHARE = 0.15


def build_demo_frames(sizes: DemoSizes = DemoSizes(), seed: int = 42) -> dict[str, pd.DataFrame]:
    """Every table of the demo CRM as a DataFrame with the table's columns, in insertion order."""
    _check_sizes(contacts=sizes.contacts, companies=sizes.companies, leads=sizes.leads, managers=sizes.managers)
    _check_seed(seed)
    with collector_paused():
        return _build(sizes, int(seed))


def _build(sizes: DemoSizes, seed: int) -> dict[str, pd.DataFrame]:
    rng, r = _rngs(seed, _PART_COMPANIES)
    companies = _make_companies(sizes.companies, DUPLICATE_SHARE, rng, r, sizes.managers)
    rng, r = _rngs(seed, _PART_CONTACTS)
    contacts = _make_people(sizes.contacts, DUPLICATE_SHARE, rng, r, sizes.managers,
                            companies.employers if sizes.companies else None)
    link_rng, _ = _rngs(seed, _PART_LINKS)
    links = _contact_links(link_rng, contacts, companies) if sizes.companies else pd.DataFrame(
        {"contact_id": pd.Series(dtype=np.int64), "company_id": pd.Series(dtype=np.int64),
         "is_primary": pd.Series(dtype=bool)})
    leads = _make_leads(sizes.leads, seed, sizes.managers, contacts, companies, links)
    deals, invoices, quotes = _deals(link_rng, contacts, companies, leads, links, sizes.managers)
    activities, history = _events(link_rng, contacts, companies, leads, sizes.managers)
    comms = pd.concat([f.assign(entity_type=t) for t, f in
                       (("contact", contacts.comms), ("company", companies.comms), ("lead", leads.comms))],
                      ignore_index=True)
    comms.insert(0, "id", np.arange(1, len(comms) + 1))
    truth = pd.concat([f.assign(entity_type=t) for t, f in
                       (("contact", contacts.truth), ("company", companies.truth), ("lead", leads.truth))],
                      ignore_index=True)
    frames = {"users": _users(sizes.managers), "companies": companies.frame, "contacts": contacts.frame,
              "contact_companies": links, "leads": leads.frame, "communications": comms, "deals": deals,
              "invoices": invoices, "quotes": quotes, "activities": activities, "history": history,
              "demo_truth": truth}
    tables = {t.name: t for t in schema.CRM_TABLES}
    return {name: frame[[c.name for c in tables[name].columns]] for name, frame in frames.items()}


def generate_demo(store: Store, sizes: DemoSizes = DemoSizes(), seed: int = 42) -> dict[str, int]:
    """Fill an empty CRM database with the demo; returns the rows written per table.

    Everything is written in one transaction with explicit ids (1..n per table), then the id
    sequences are moved past them (PostgreSQL), so later inserts get fresh ids.
    """
    started = time.perf_counter()
    frames = build_demo_frames(sizes, seed)
    built = time.perf_counter()
    with store.engine.begin() as conn:
        for table in schema.CRM_TABLES:
            if conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one():
                raise ValueError(f"The database {store.display_url} already has rows in {table.name}; the demo "
                                 "needs an empty CRM (crm-dedup demo --replace empties it first).")
        counts = {}
        for name, frame in frames.items():
            counts[name] = store.insert(schema.metadata.tables[name], frame, conn=conn)
        store.fix_sequences(conn)
    log.info("demo CRM (seed %s) built in %.1f s, written to %s in %.1f s: %s", seed, built - started,
             store.display_url, time.perf_counter() - built, counts)
    return counts


def read_truth(store: Store, entity_type: str) -> pd.Series:
    """entity_id -> cluster for one entity type (only evaluation may read this)."""
    if entity_type not in schema.ENTITY_TYPES:
        raise ValueError(f"Unknown entity type {entity_type!r}: use one of {', '.join(schema.ENTITY_TYPES)}.")
    t = schema.demo_truth
    frame = store.read_frame(sa.select(t.c.entity_id, t.c.cluster).where(t.c.entity_type == entity_type)
                             .order_by(t.c.entity_id))
    index = pd.Index(frame["entity_id"].astype(np.int64), name="entity_id")
    return pd.Series(frame["cluster"].to_numpy(), index=index, name="cluster")
